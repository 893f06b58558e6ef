"""EvalAI's answer processor and M4C's soft accuracy against references written here from the description in
EVAL_TABLE.md (step by step, character by character), on adversarial answers."""

from __future__ import annotations

import json
import random

import pytest

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.tasks.vqa.vqa_answers import (
    CONTRACTIONS,
    normalize_answer,
    processing_counts,
    read_latest_answers,
    soft_accuracy,
    soft_scores,
)

MARKS = set(';/[]"{}()=+\\_->@`,?!') | {"<"}
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


def reference(answer: str) -> str:
    """The five steps as EVAL_TABLE.md describes them, written with loops instead of regexes."""
    text = answer.lower()
    text = "".join(ch for ch in text if ch not in ",?")
    text = " 's".join(text.split("'s")).strip()
    text = "".join(" " if ch in "\n\t" else ch for ch in text).strip()
    # 3: a mark beside a space anywhere in the string entering this step is deleted everywhere, else spaced out
    beside = {ch for i, ch in enumerate(text) if ch in MARKS
              and ((i > 0 and text[i - 1] == " ") or (i + 1 < len(text) and text[i + 1] == " "))}
    text = "".join("" if ch in beside else " " if ch in MARKS else ch for ch in text)
    # 4: periods not followed by a digit, the first 32 of them only
    kept, deleted = [], 0
    for i, ch in enumerate(text):
        if ch == "." and deleted < 32 and not (i + 1 < len(text) and text[i + 1].isdecimal()):
            deleted += 1
            continue
        kept.append(ch)
    words = [NUMBERS.get(w, w) for w in "".join(kept).lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ("a", "an", "the"))


EXAMPLES = [  # EVAL_TABLE.md's worked examples
    ("wait" + "." * 40, "wait" + "." * 8),
    ("U.S.A.", "usa"),
    ("3.5", "3.5"),
    ("3.", "3"),
    ("1,000", "1000"),
    ("(B)", "b"),
    ("x-ray", "x ray"),
    ("it's", "it 's"),
    ("Yes\nNo", "yes no"),
    ("none", "0"),
]


@pytest.mark.parametrize(("answer", "expected"), EXAMPLES)
def test_documented_examples(answer, expected):
    assert normalize_answer(answer) == expected
    assert reference(answer) == expected


ADVERSARIAL = [
    "Yes.", "yes", "YES", "No, there is not.", "Yes, there is", "Two", "two dogs", "The answer is ten.",
    "a", "an apple", "the", "The The the", "A. cat", "(A) red", "B", "b.", "Option (C)", "C. Blue",
    "", " ", "\t", "\n\n", "yes\tno", "left\n\tright", "  spaced   out  ", "none of the above", "None",
    "zero", "nine.", "10.", "1.5.", "...", ". . .", "3..5", "v1.0.2", "e.g.", "a.m.", "Mr. Smith's dog",
    "dog's", "it's", "its", "dont", "Dont", "don't", "cant", "Im", "Ive", "ive", "somebody'd", "let's",
    "yall'll", "'ows'at", "twas", "wont go", "x - ray", "x -ray", "x- ray", "a/b", "a / b", "[yes]", "{no}",
    "\"quoted\"", "\" quoted \"", "a=b", "1+1", "back\\slash", "snake_case", "->", "<tag>", "@home", "`code`",
    "hi!", "hi !", "why?", "what? yes", "1,000,000", "1, 000", "3,4", "pi=3.14159", "....5", "5....",
    "café", "CAFÉ", "Straße", "İstanbul", "東京", "١٢.٣", "no\u00a0way", "tab\u3000ideographic", "emoji 😀.",
    "ﬁne", "Ǆ", "’s quote", "it’s", "Unanswerable", "unanswerable.", "red and white", "Red, White, Blue",
    "(b) cat (c) dog", "a (b) c", "a( b", "$5.00", "5 %", "#1", "&", "&amp;", "semi;colon", "semi; colon",
    "." * 33 + "x", "x" + "." * 31 + "5", ". " * 40, "1." * 40, "The dog's bone's color is two.",
]


@pytest.mark.parametrize("answer", ADVERSARIAL)
def test_adversarial_answers_match_the_reference(answer):
    assert normalize_answer(answer) == reference(answer)


def test_random_strings_match_the_reference():
    pieces = ["a", "an", "the", "none", "two", "ten", "yes", "no", "dont", "it", "'s", "s", "x", "1", "3", "0",
              ".", "..", ",", "?", "!", "-", "(", ")", "/", "\\", "_", '"', "`", "<", ">", "@", "=", "+", ";",
              "[", "]", "{", "}", " ", "  ", "\n", "\t", "é", "Ä", "İ", "٣", "\u00a0", "'", "Yes", "THE"]
    rng = random.Random(23)
    for _ in range(3000):
        answer = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert normalize_answer(answer) == reference(answer), answer


def test_the_punctuation_test_reads_the_string_before_any_mark_is_replaced():
    # "-" is beside a space only in the original, so it is deleted everywhere, even in "x-ray".
    assert normalize_answer("x-ray - scan") == "xray scan"
    assert normalize_answer("x-ray scan") == "x ray scan"
    # a "(" turned into a space earlier does not make ")" count as beside a space
    assert normalize_answer("(b)c") == "b c"


def test_at_most_32_periods_are_deleted():
    assert normalize_answer("." * 32 + "ok") == "ok"
    assert normalize_answer("." * 33 + "ok") == ".ok"
    assert normalize_answer("x." * 40) == "x" * 32 + "x." * 8
    assert normalize_answer("1." * 40) == "1." * 39 + "1"  # a period before a digit stays


def test_a_few_contractions_from_mmf_s_table():
    expected = {"dont": "don't", "cant": "can't", "wont": "won't", "youre": "you're", "oclock": "o'clock",
                "twas": "'twas", "yall'll": "y'all'll", "somebody'd": "somebodyd", "shouldnt've": "shouldn't've",
                "Im": "I'm", "let's": "let's"}
    assert {key: CONTRACTIONS[key] for key in expected} == expected
    assert len(CONTRACTIONS) == 120
    assert normalize_answer("I dont know") == "i don't know"
    assert normalize_answer("Im") == "im"  # capital keys never match: the text is lower-cased first
    assert normalize_answer("whats that") == "what's that"


def m4c_reference(prediction: str, gt_answers: list[str]) -> float:
    """M4C's score by counting: a GT answer given c times scores (c*min(1,(c-1)/3) + (10-c)*min(1,c/3))/10."""
    processed = [reference(a) for a in gt_answers]
    mine = reference(prediction)
    c = processed.count(mine)
    if c == 0:
        return 0.0
    return (c * min(1.0, (c - 1) / 3) + (len(processed) - c) * min(1.0, c / 3)) / len(processed)


@pytest.mark.parametrize(("prediction", "gt"), [
    ("yes", ["yes"] * 10),
    ("Yes.", ["yes"] * 3 + ["no"] * 7),
    ("two", ["2", "2", "two", "Two.", "3", "3", "3", "3", "3", "3"]),
    ("no", ["yes"] * 9 + ["no"]),
    ("nokia", ["Nokia", "nokia", "NOKIA", "nokia.", "samsung", "the nokia", "a nokia", "lg", "lg", "lg"]),
    ("", ["", "", "x", "x", "x", "x", "x", "x", "x", "x"]),
    ("None", ["0", "none", "zero", "nothing", "nothing", "nothing", "nothing", "n", "o", "p"]),
    ("dakota", ["dakota digital"] * 10),
])
def test_soft_accuracy_matches_the_counting_reference(prediction, gt):
    assert soft_accuracy(prediction, gt) == pytest.approx(m4c_reference(prediction, gt), abs=1e-12)


def test_soft_scores_per_distinct_answer():
    scores = soft_scores(["a cat", "cat", "Cat.", "dog", "dog", "bird", "x", "y", "z", "w"])
    assert scores["cat"] == pytest.approx(1.0 * 0 + 0.3 * 2 / 3 + 0.7 * 1.0)  # 3 cats: 3*(2/3) + 7*1, over 10
    assert scores["dog"] == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert scores["bird"] == pytest.approx(9 * (1 / 3) / 10)


def test_processing_counts():
    pairs = [(a, normalize_answer(a)) for a in ["yes", "Yes", "  no ", "Yes.", "two", "the", ""]]
    counts = processing_counts(pairs)
    assert (counts.unchanged, counts.case_or_spacing, counts.rewritten, counts.emptied) == (2, 2, 3, 1)
    assert ("Yes.", "yes") in counts.examples


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")
    return path


def test_latest_answers_a_later_line_wins_as_in_llava_s_converters(tmp_path):
    rows = [{"question_id": 1, "prompt": "q", "text": "cat", "answer_id": "x", "model_id": "m", "metadata": {}},
            {"question_id": 2, "prompt": "q", "text": "dog", "answer_id": "y", "model_id": "m", "metadata": {}},
            {"question_id": 1, "prompt": "q", "text": "Cat!", "answer_id": "z", "model_id": "m", "metadata": {}}]
    answers = read_latest_answers(_write(tmp_path / "a.jsonl", rows, tail='{"question_id": 3, "te'))
    assert answers.texts == {"1": "Cat!", "2": "dog"}
    assert answers.overridden == ["1"] and answers.torn_tail and answers.lines == 4


@pytest.mark.parametrize(("body", "needle"), [
    ('{"question_id": 1}\n', "line 1"),
    ('not json\n{"question_id": 1, "text": "x"}\n', "line 1: not JSON"),
    ('{"question_id": [1], "text": "x"}\n', "line 1"),
])
def test_latest_answers_bad_lines_name_the_line(tmp_path, body, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(LlavaLfError, match=needle):
        read_latest_answers(path)
    with pytest.raises(LlavaLfError, match="predict"):
        read_latest_answers(tmp_path / "absent.jsonl")
