"""MMBench and MMBench-CN against LLaVA's own rules, re-implemented here from their description: the prompt of
`model_vqa_mmbench.py`, the workbook of `convert_mmbench_for_submission.py` (compared as data), and the circular
evaluation with VLMEvalKit's rule-based `can_infer`, on stand-in TSVs shaped like the released ones."""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from PIL import Image
from test_eval_data import run_cli

from llava_lf.evaluation.tasks import TASKS
from llava_lf.evaluation.tasks.mmbench.mmbench_circular import infer_letter
from llava_lf.evaluation.tasks.mmbench.mmbench_data import decode_images, load_rows, prediction_requests

pytestmark = pytest.mark.host  # the predict test runs the tiny model through the host's template

COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
           "comment", "split"]
STRIDE = 1_000_000
EN = "Answer with the option's letter from the given choices directly."
CN = "请直接回答选项字母。"


def png_base64(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# (question, hint, options, answer letter, category, l2-category, colour, rotated copies)
EN_QUESTIONS = [
    ("What colour is the square?", None, ["red", "green", "blue", "yellow"], "A", "attribute_recognition",
     "finegrained_perception (instance-level)", (200, 0, 0), 3),
    ("How many circles are there?", "The picture shows circles on a table.", ["one", "two", "three"], "C",
     "object_localization", "finegrained_perception (instance-level)", (0, 200, 0), 2),
    ("Is the sky visible?", None, ["yes", "no"], "B", "image_scene", "coarse_perception", (0, 0, 200), 1),
    # pandas reads the text None as NaN: LLaVA's prompt stops at B; the scorer's choices skip C but keep D
    ("Which animal is shown?", "Look closely.", ["cat", "dog", "None", "both"], "B", "image_scene",
     "coarse_perception", (200, 0, 0), 0),
    # NONE stays text for pandas, but LLaVA's is_none still stops the prompt there
    ("Where is the ball?", None, ["left", "right", "NONE", "top"], "A", "spatial_relationship",
     "relation_reasoning", (90, 90, 90), 1),
    ("What is the mood?", "nan", ["happy", "sad"], "A", "image_emotion", "coarse_perception", (10, 20, 30), 1),
]
CN_QUESTIONS = [
    ("图中正方形是什么颜色？", None, ["红色", "绿色", "蓝色"], "A", "attribute_recognition",
     "finegrained_perception (instance-level)", (200, 0, 0), 2),
    ("图中有几个圆？", "图中有一些圆。", ["一个", "两个"], "B", "object_localization",
     "finegrained_perception (instance-level)", (0, 200, 0), 1),
]


def stand_in_rows(questions) -> list[dict]:
    """Base rows at index i and rotated copies at i + k * 10^6 (options rotated by k, the answer with them)."""
    rows = []
    for number, (question, hint, options, answer, category, l2, colour, copies) in enumerate(questions):
        image = png_base64(colour)
        for k in range(copies + 1):
            rotated = options[k:] + options[:k]
            letter = "ABCD"[("ABCD".index(answer) - k) % len(options)]
            cells = dict(zip("ABCD", rotated + [None] * (4 - len(rotated))))
            rows.append({"index": number + k * STRIDE, "question": question, "hint": hint, **cells, "answer": letter,
                         "category": category, "image": image, "source": "stand-in", "l2-category": l2,
                         "comment": None, "split": "dev"})
    return rows


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture()
def en_tsv(tmp_path) -> Path:
    return write_tsv(tmp_path / "mmbench_dev_20230712.tsv", stand_in_rows(EN_QUESTIONS))


@pytest.fixture()
def cn_tsv(tmp_path) -> Path:
    return write_tsv(tmp_path / "mmbench_dev_cn_20231003.tsv", stand_in_rows(CN_QUESTIONS))


# LLaVA's rules, re-implemented from their description ---------------------------------------------

def llava_is_none(value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.lower() in {"nan", "none"}


def llava_prompts(tsv: Path, instruction: str) -> list[tuple[int, str, str]]:
    """model_vqa_mmbench.py: (question_id, stored prompt, what the model is asked after the image)."""
    asked = []
    for _, row in pd.read_table(tsv).iterrows():
        options = []
        for letter in "ABCD":
            if llava_is_none(row[letter]):
                break
            options.append(row[letter])
        question = row["question"] if llava_is_none(row["hint"]) else row["hint"] + "\n" + row["question"]
        for letter, option in zip("ABCD", options):
            question = question + "\n" + letter + ". " + option
        asked.append((int(row["index"]), question, question + "\n" + instruction))
    return asked


def llava_converter(tsv: Path, answer_file: Path, out: Path) -> None:
    """convert_mmbench_for_submission.py: drop six columns, an empty prediction column at 6, raw text."""
    table = pd.read_table(tsv)
    upload = table.copy().drop(columns=["hint", "category", "source", "image", "comment", "l2-category"])
    upload.insert(6, "prediction", None)
    for line in answer_file.read_text().splitlines():
        record = json.loads(line)
        upload.loc[table["index"] == record["question_id"], "prediction"] = record["text"]
    upload.to_excel(out, index=False, engine="openpyxl")


def sheet_values(path: Path) -> list[list]:
    book = openpyxl.load_workbook(path)
    (sheet,) = book.worksheets
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


REFUSAL_PHRASES = ["Sorry, I can't help with images of people yet.", "I can't process this file.",
                   "I'm sorry, but without the image provided", "Cannot determine the answer"]


def reference_can_infer(answer, choices: dict) -> str | None:
    """VLMEvalKit's can_infer: a letter token among the last four tokens, else option text in a short answer."""
    answer = str(answer)
    if "Failed to obtain answer via API" not in answer:
        if any(phrase in answer for phrase in REFUSAL_PHRASES):
            return "Z"
        spaced = answer
        for character in ".()[],:;!*#{}":
            spaced = spaced.replace(character, " ")
        splits = [part.strip() for part in spaced.split()]
        count = sum(1 for letter in choices if letter in splits)
        if count == 1:
            for letter in choices:
                if letter in splits and splits.index(letter) > (len(splits) - 5):
                    return letter
        elif count == 0 and sum(1 for mark in ("Z", "") if mark in splits) == 1:
            return "Z"
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(text)) for text in choices.values()):
        return None
    candidates = [letter for letter in choices if str(choices[letter]).lower() in lowered]
    return candidates[0] if len(candidates) == 1 else None


def reference_circular(tsv: Path, answers: dict[int, str]) -> dict:
    table = pd.read_table(tsv)
    outcome: dict[int, list[bool]] = {}
    for _, row in table.iterrows():
        choices = {letter: row[letter] for letter in "ABCD" if not pd.isna(row[letter])}
        index = int(row["index"])
        right = index in answers and reference_can_infer(answers[index], choices) == row["answer"]
        outcome.setdefault(index % STRIDE, []).append(right)
    passed = {group: all(flags) for group, flags in outcome.items()}
    base = table[table["index"] < STRIDE].set_index("index")

    def percent(groups):
        return 100.0 * sum(passed[g] for g in groups) / len(groups)

    return {"all": percent(list(passed)),
            "categories": {c: percent([g for g in passed if base.loc[g, "category"] == c])
                           for c in set(base["category"])},
            "l2_categories": {c: percent([g for g in passed if base.loc[g, "l2-category"] == c])
                              for c in set(base["l2-category"])}}


def llava_answer_file(path: Path, tsv: Path, texts: dict[int, str], extra: list[tuple[int, str]] = ()) -> Path:
    """LLaVA's answer-file layout (round_id, options, option_char, answer_id, model_id, metadata); `extra` lines
    come after, as `--all-rounds` would write them."""
    prompts = {index: prompt for index, prompt, _ in llava_prompts(tsv, EN)}
    lines = []
    for number, (index, text) in enumerate(list(texts.items()) + list(extra)):
        round_id = 1 if number >= len(texts) else 0
        lines.append(json.dumps({"question_id": index, "round_id": round_id, "prompt": prompts[index], "text": text,
                                 "options": ["x", "y"], "option_char": ["A", "B"], "answer_id": f"id{number}",
                                 "model_id": "llava-v1.5-7b", "metadata": {}}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Adversarial answers, by row position in the stand-in TSV
ADVERSARIAL = ["(A)", "B.", "c", "blue", "The answer is B", "A or B", "", "\tA\n", "Ａ", "I think it is A.",
               "C", "Cannot determine the answer", "Z", "three and two", "Answer: B", "b", "yes", "B",
               "It is a dog", "A", "left", "A", "happy", "A. happy"]


# One answer per row of the English stand-in, in TSV order (question 0 and its three copies first): questions
# 0, 2 and 3 come out right only when every rule is read as VLMEvalKit reads it (and the later line wins)
PER_ROW = ["(A)", "The answer is D", "A", "B.",  # 0: (A); D; C by option text, from the later line; B
           "\tC\n", "Ｂ", "A or B",  # 1: a fullwidth letter and two letters are unreadable
           "no", "I think it is A.",  # 2: option text; one letter token among words
           "It is a dog",  # 3: option text (choices A, B and D: the text None is NaN)
           "", "D",  # 4: empty is unreadable
           "Cannot determine the answer", "Z"]  # 5: refusals


# The prompt -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, instruction", [("en", EN), ("cn", CN)])
def test_requests_follow_model_vqa_mmbench(tmp_path, en_tsv, cn_tsv, variant, instruction):
    tsv = en_tsv if variant == "en" else cn_tsv
    rows = load_rows(tsv, images=True)
    cache = decode_images(rows, tmp_path / "images", tsv)
    requests = prediction_requests(rows, cache.paths, variant)
    expected = llava_prompts(tsv, instruction)
    assert [(r.question_id, r.stored_prompt, r.question) for r in requests] == expected
    assert all(type(r.question_id) is int for r in requests)
    truncated = {index: prompt for index, prompt, _ in expected}
    if variant == "en":  # the option text None (NaN to pandas) and NONE both end the list
        assert truncated[3].endswith("\nA. cat\nB. dog") and truncated[4].endswith("\nA. left\nB. right")
        assert truncated[1].startswith("The picture shows circles on a table.\nHow many")
        assert truncated[5].startswith("What is the mood?")  # the hint text "nan" is no hint
    # one file per distinct image, read back as the TSV's bytes
    assert cache.files == len({q[6] for q in (EN_QUESTIONS if variant == "en" else CN_QUESTIONS)})
    table = pd.read_table(tsv)
    for index, image in zip(table["index"], table["image"]):
        assert cache.paths[int(index)].read_bytes() == base64.b64decode(image)


def test_an_image_cell_naming_another_row_shares_its_image(tmp_path):
    rows = stand_in_rows(EN_QUESTIONS[:2])
    rows[1]["image"] = str(rows[0]["index"])  # VLMEvalKit's TSVs point copies at their base row
    tsv = write_tsv(tmp_path / "ref.tsv", rows)
    loaded = load_rows(tsv, images=True)
    cache = decode_images(loaded, tmp_path / "images", tsv)
    assert cache.paths[loaded[1].index] == cache.paths[loaded[0].index]


# The upload workbook --------------------------------------------------------------------------------

def score(tsv: Path, predictions: Path, out: Path, *extra, benchmark: str = "mmbench") -> int:
    return run_cli(benchmark, "score", "--data", tsv, "--predictions", predictions, "--out-dir", out, *extra)


def test_workbook_and_circular_estimate_equal_the_reference(tmp_path, en_tsv):
    indices = [int(i) for i in pd.read_table(en_tsv)["index"]]
    texts = dict(zip(indices, PER_ROW))
    # a later line for the same question wins in LLaVA's converter (here: a second round's answer)
    answers = llava_answer_file(tmp_path / "llava.jsonl", en_tsv, texts, extra=[(indices[2], "(C) blue")])
    assert len(texts) == len(PER_ROW)
    assert score(en_tsv, answers, tmp_path / "out") == 0
    llava_converter(en_tsv, answers, tmp_path / "llava.xlsx")
    assert sheet_values(tmp_path / "out" / "mmbench_upload.xlsx") == sheet_values(tmp_path / "llava.xlsx")
    assert sheet_values(tmp_path / "llava.xlsx")[0] == ["index", "question", "A", "B", "C", "D", "prediction",
                                                        "answer", "split"]

    payload = json.loads((tmp_path / "out" / "mmbench.json").read_text())
    final = texts | {indices[2]: "(C) blue"}
    expected = reference_circular(en_tsv, final)
    assert expected["all"] == pytest.approx(50.0)  # questions 0, 2 and 3 of six
    circular = payload["circular"]
    assert circular["all"] == pytest.approx(expected["all"])
    assert circular["categories"] == pytest.approx(expected["categories"])
    assert circular["l2_categories"] == pytest.approx(expected["l2_categories"])
    assert payload["prompt_differs"] == [] and payload["upload"] == "mmbench_upload.xlsx"
    unreadable = [i for i in indices if reference_can_infer(final[i], {
        k: v for k, v in pd.read_table(en_tsv).set_index("index").loc[i, list("ABCD")].items() if not pd.isna(v)}) is None]
    assert sorted(circular["unreadable"]) == sorted(unreadable) and unreadable
    markdown = (tmp_path / "out" / "mmbench.md").read_text()
    assert "not the server's figure" in markdown and "mmbench_upload.xlsx" in markdown
    assert TASKS["mmbench"].column.headline(payload) is None  # the table shows the upload, not our estimate
    assert TASKS["mmbench"].column.upload == "mmbench_upload.xlsx"


def test_letter_extraction_equals_the_reference_on_adversarial_answers():
    choice_sets = [{"A": "red", "B": "green", "C": "blue", "D": "yellow"}, {"A": "yes", "B": "no"},
                   {"A": "cat", "B": "dog", "D": "both"}, {"A": "红色", "B": "绿色"}, {"A": "A", "B": "B"},
                   {"A": "an apple", "B": "apple"}]
    answers = ADVERSARIAL + ["B is the right one among all of these", "I would say that the answer is C",
                             "The colour of the square in the picture is clearly blue, as anyone can see", "(B)", "B.", "b", "The answer is B", "A, B", "", "\t", "B\u3000", "Ｂ", "答案是B",
                             "绿色", "B\nC", "[C]", "{D}", "*A*", "#B", "a", "Failed to obtain answer via API B",
                             "Sorry, I can't help with images of people yet. A", "apple", "an apple", "D: both",
                             "B\x1fC", "B\x07", "A:B", "nan", "none of them", "Option E"]
    for choices in choice_sets:
        for answer in answers:
            assert infer_letter(answer, choices).letter == reference_can_infer(answer, dict(choices)), (answer, choices)


def test_chinese_tsv_writes_its_own_workbook(tmp_path, cn_tsv):
    indices = [int(i) for i in pd.read_table(cn_tsv)["index"]]
    texts = dict(zip(indices, ["A", "绿色", "C", "答案是B", "B"]))
    answers = llava_answer_file(tmp_path / "llava_cn.jsonl", cn_tsv, texts)
    assert score(cn_tsv, answers, tmp_path / "out", benchmark="mmbench-cn") == 0
    llava_converter(cn_tsv, answers, tmp_path / "llava.xlsx")
    assert sheet_values(tmp_path / "out" / "mmbench_cn_upload.xlsx") == sheet_values(tmp_path / "llava.xlsx")
    payload = json.loads((tmp_path / "out" / "mmbench_cn.json").read_text())
    assert payload["circular"]["all"] == pytest.approx(reference_circular(cn_tsv, texts)["all"])
    assert TASKS["mmbench-cn"].column.upload == "mmbench_cn_upload.xlsx"


def test_control_characters_are_removed_where_llava_crashes(tmp_path, en_tsv):
    indices = [int(i) for i in pd.read_table(en_tsv)["index"]]
    texts = {index: "A" for index in indices} | {indices[1]: "A\x07", indices[2]: "\x00C\x1b"}
    answers = llava_answer_file(tmp_path / "llava.jsonl", en_tsv, texts)
    with pytest.raises(openpyxl.utils.exceptions.IllegalCharacterError):
        llava_converter(en_tsv, answers, tmp_path / "llava.xlsx")
    assert score(en_tsv, answers, tmp_path / "out") == 0
    cleaned = {index: text.translate(dict.fromkeys([0, 7, 27])) for index, text in texts.items()}
    llava_answer_file(tmp_path / "clean.jsonl", en_tsv, cleaned)
    llava_converter(en_tsv, tmp_path / "clean.jsonl", tmp_path / "clean.xlsx")
    assert sheet_values(tmp_path / "out" / "mmbench_upload.xlsx") == sheet_values(tmp_path / "clean.xlsx")
    payload = json.loads((tmp_path / "out" / "mmbench.json").read_text())
    assert payload["control_characters"]["removed"] == 3
    assert [cell["index"] for cell in payload["control_characters"]["cells"]] == [indices[1], indices[2]]
    assert payload["circular"]["all"] == pytest.approx(reference_circular(en_tsv, cleaned)["all"])
    assert "Control characters" in (tmp_path / "out" / "mmbench.md").read_text()


def test_partial_answers_need_allow_partial_and_count_wrong(tmp_path, en_tsv, capsys):
    indices = [int(i) for i in pd.read_table(en_tsv)["index"]]
    texts = {index: reference for index, reference in zip(indices, pd.read_table(en_tsv)["answer"])}
    answered = {index: text for index, text in texts.items() if index != indices[1]}
    answers = llava_answer_file(tmp_path / "partial.jsonl", en_tsv, answered)
    assert score(en_tsv, answers, tmp_path / "out") == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert score(en_tsv, answers, tmp_path / "out", "--allow-partial") == 0
    payload = json.loads((tmp_path / "out" / "mmbench.json").read_text())
    assert payload["missing"] == [indices[1]]
    expected = reference_circular(en_tsv, answered)["all"]
    assert payload["circular"]["all"] == pytest.approx(expected) and expected == pytest.approx(500 / 6)
    llava_converter(en_tsv, answers, tmp_path / "llava.xlsx")  # the converter leaves the row empty
    assert sheet_values(tmp_path / "out" / "mmbench_upload.xlsx") == sheet_values(tmp_path / "llava.xlsx")


def test_answers_from_another_tsv_are_refused(tmp_path, en_tsv, cn_tsv, capsys):
    indices = [int(i) for i in pd.read_table(en_tsv)["index"]]
    answers = llava_answer_file(tmp_path / "en.jsonl", en_tsv, {index: "A" for index in indices})
    assert score(cn_tsv, answers, tmp_path / "out", "--allow-partial", benchmark="mmbench-cn") == 2
    assert "no index of the TSV" in capsys.readouterr().err


@pytest.mark.parametrize("damage, message", [("no_hint", "lacks the column(s) hint"),
                                             ("bad_image", "column `image`"), ("text_index", "column `index`")])
def test_a_damaged_tsv_is_named(tmp_path, damage, message, capsys):
    rows = stand_in_rows(EN_QUESTIONS[:2])
    columns = [c for c in COLUMNS if c != "hint"] if damage == "no_hint" else COLUMNS
    if damage == "bad_image":
        rows[1]["image"] = "not*base64!"
    if damage == "text_index":
        rows[1]["index"] = "seven"
    tsv = tmp_path / "damaged.tsv"
    pd.DataFrame(rows, columns=columns).to_csv(tsv, sep="\t", index=False)
    code = run_cli("mmbench", "predict", "--data", tsv, "--model", tmp_path / "no_model", "--out", tmp_path / "p.jsonl")
    assert code == 2 and message in capsys.readouterr().err


# Predict on the tiny model ----------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_predict_builds_llava_prompts_decodes_images_once_and_resumes(tmp_path, tiny_llava, en_tsv, capsys):
    from llava_lf.evaluation.predict import PredictionRequest, question_hash

    out = tmp_path / "answers.jsonl"
    argv = ["mmbench", "predict", "--data", en_tsv, "--model", tiny_llava, "--out", out, "--limit", 3,
            "--max-new-tokens", 4, "--device", "cpu", "--batch-size", 2]
    assert run_cli(*argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = llava_prompts(en_tsv, EN)[:3]
    assert [(r["question_id"], r["prompt"]) for r in records] == [(i, p) for i, p, _ in expected]
    images = tmp_path / "answers.images"
    files = sorted(images.iterdir())
    table = pd.read_table(en_tsv)
    assert len(files) == len(set(table["image"][:3]))  # rows 0 and its copies share one picture
    for record, (index, _, asked) in zip(records, expected):
        image = next(f for f in files if f.read_bytes() == base64.b64decode(table.set_index("index").loc[index, "image"]))
        # the model was asked the prompt plus LLaVA's instruction line, with the decoded image
        assert record["metadata"]["question_hash"] == question_hash(PredictionRequest(str(index), asked, image))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    capsys.readouterr()
    assert run_cli(*argv) == 0
    assert "3 already answered, 0 answered now" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in images.iterdir()} == stamps
    assert not [f for f in os.listdir(images) if f.endswith(".part")]
