"""Hostile and fuzzed records through the real `llava-lf inspect` command: it never crashes, counts every
record, rejects exactly what `llava-lf check` rejects, and its queries give what plain Python counts of the
same per-record figures give."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from llava_lf.cli import run
from llava_lf.data.convert import check_file
from llava_lf.data.convert.reader import iter_records
from llava_lf.data.convert.validate import printable
from llava_lf.data.inspect.figures import PUNCTUATION, record_figures
from llava_lf.data.inspect.kinds import TypeRule
from llava_lf.data.inspect.verdict import ConverterChecks

SEED = 20240607
COUNT = 400
WORDS = ["the", "bus", "red", "Sign", "狗", "猫が座っている", "café", "naïve", "😀", "İstanbul", "ſorry", "Straße",
         "x", "\u200b", "a-b", "3.5", "Ünïcödé", "e\u0301", "zero\u200dwidth", "What", "Describe"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\x1c", "\x1f", "\x85", "\u2009", "\x0b"]
REFUSALS = ["I'm sorry, I cannot tell.", "As an AI, I do not know.", "I cannot help with that.", "I’m unable to say.",
            "i CAN'T ASSIST here", "As a language model: no"]
FOLDERS = ["coco/train2017/{k:012d}.jpg", "{k:05d}/{k}.png", "img{k}.jpg", "gqa/images/{k}.jpg", "sub/dir/{k}.png"]
PATHS = [pattern.format(k=k) for k in range(12) for pattern in FOLDERS]
_CHARS = ("abcXYZ019 .,!?'\"\\/-_:{}[]<>" + "".join(SPACES) + "\x00\x01\x7f\x80\xa0\xad" + "狗猫日本語ÜßİıſΣς"
          + "\u0301\u200b\u2028\ufeff\uffff" + "😀👍🏽")
_ROLES = ["human", "gpt", "system", "Human", "user", "", 1, 0, None, True, 2.5, ["human"], {"x": 1}]


def pair(question: str, answer: str = "An answer.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _text(rng: random.Random) -> str:
    text = "".join(rng.choice(WORDS) + rng.choice(SPACES) for _ in range(rng.randint(1, 9)))
    return text if text.strip() else "word"


def plain_record(rng: random.Random, index: int) -> dict:
    """A record the converter accepts as it is (human/gpt pairs, one placeholder per image, text everywhere)."""
    image = rng.choice(PATHS) if rng.random() < 0.7 else None
    turns = []
    for number in range(rng.choice([1, 1, 2, 3, 6])):
        question = rng.choice(["What is this?", "Describe the following image in detail", _text(rng)])
        if image is not None and number == 0:
            question = rng.choice(["<image>\n" + question, question + "\n<image>", "foo<image>bar " + question])
        turns += pair(question, rng.choice(REFUSALS) if rng.random() < 0.08 else _text(rng))
    record: dict = {"id": rng.choice([f"coco-{index}", index * 7 + 100_000, f"q{index}-detail", None])}
    if image is not None:
        record["image"] = image
    if rng.random() < 0.1:
        record["source"] = rng.choice(["sharegpt", "", "coco", "ＣＯＣＯ"])
    record["conversations"] = turns
    return record


def _random_text(rng: random.Random, surrogates: bool) -> str:
    pieces = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.1:
            pieces.append("<image>")
        elif roll < 0.15 and surrogates:
            pieces.append(chr(rng.randint(0xD800, 0xDFFF)))
        elif roll < 0.25:
            pieces.append(rng.choice(REFUSALS))
        else:
            pieces.append("".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 6))))
    return "".join(pieces)


def _random_value(rng: random.Random, surrogates: bool, depth: int = 0) -> object:
    roll = rng.randrange(10 if depth < 2 else 8)
    if roll < 3:
        return rng.choice([None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, 10**30, 1.5, float("nan")])
    if roll < 8:
        return _random_text(rng, surrogates)
    if roll == 8:
        return [_random_value(rng, surrogates, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_random_text(rng, False) or "k": _random_value(rng, surrogates, depth + 1) for _ in range(rng.randint(0, 3))}


def _fuzz_record(rng: random.Random, index: int, surrogates: bool) -> object:
    if rng.random() < 0.05:
        return _random_value(rng, surrogates)

    def maybe(plausible):  # a plausible value, or any JSON value
        return plausible() if rng.random() < 0.6 else _random_value(rng, surrogates)

    record: dict = {}
    if rng.random() < 0.8:
        record["id"] = maybe(lambda: rng.choice([f"f{index}", index, f"x{index}-detail", str(rng.randrange(COUNT))]))
    if rng.random() < 0.6:
        record["image"] = maybe(lambda: rng.choice(PATHS + [[rng.choice(PATHS)], [], ""]))
    for key in ("source", "type", _random_text(rng, False) or "extra"):
        if rng.random() < 0.1:
            record[key] = _random_value(rng, surrogates)

    def turn(position: int) -> object:
        if rng.random() < 0.05:
            return _random_value(rng, surrogates)
        role = ("human", "gpt")[position % 2] if rng.random() < 0.8 else rng.choice(_ROLES)
        made = {"from": role, "value": _random_text(rng, surrogates) if rng.random() < 0.9
                else _random_value(rng, surrogates)}
        if rng.random() < 0.05:
            del made[rng.choice(["from", "value"])]
        return made

    record["conversations"] = maybe(lambda: [turn(position) for position in range(rng.randint(0, 7))])
    return record


def _fuzz_file(path: Path, seed: int, surrogates: bool, layout: str = "indent") -> list:
    rng = random.Random(seed)
    records: list = []
    while len(records) < COUNT:
        records += [plain_record(rng, len(records) + n) for n in range(rng.choice([0, 5, 30]))]
        records += [_fuzz_record(rng, len(records) + n, surrogates) for n in range(rng.randint(1, 30))]
    records = records[:COUNT]
    for _ in range(20):  # exact duplicates under other ids
        source, target = rng.randrange(COUNT), rng.randrange(COUNT)
        if isinstance(records[source], dict):
            records[target] = {**records[source], "id": f"dup-{target}"}
    records[COUNT // 2] = {"id": "int-role", "conversations": [{"from": 1, "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]}
    if layout == "jsonl":
        path.write_text("\n".join(json.dumps(record) for record in records) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")  # a lone surrogate as its escape
    return records


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Two thirds of the paths as tiny real images of several shapes, one a file that is no image."""
    root = tmp_path_factory.mktemp("images")
    rng = random.Random(SEED)
    for position, path in enumerate(PATHS):
        if position % 3 == 0:
            continue  # missing
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if position % 11 == 1:
            (root / path).write_bytes(b"not an image")
        else:
            Image.new("RGB", (rng.randint(1, 40), rng.randint(1, 40))).save(root / path, "PNG")
    return root


def _cli_card(path: Path, out: Path, *extra: str) -> dict:
    assert run(["inspect", str(path), "--out", str(out), *extra]) == 0
    [card] = json.loads((out / "card.json").read_text(encoding="utf-8"))["datasets"]
    return card


def _top(counts: Counter) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:15]


def _reference(path: Path, image_folder: Path | None) -> dict:
    """The card's aggregates counted in plain Python from the same per-record verdicts and figures."""
    checks, rule = ConverterChecks(image_folder, path.parent, stage_one=False), TypeRule.for_file(path)
    counts = {name: Counter() for name in ("sources", "types", "told_by", "pairs", "words", "questions", "answers",
                                           "first", "first_two", "content", "reasons", "uses", "missing")}
    totals = Counter()
    for source in iter_records(path):
        verdict = checks.check(source.value, source.index)
        if verdict.problems:
            counts["reasons"][verdict.problems[0].reason] += 1
        for written, file in zip(verdict.images, verdict.files or ()):
            counts["uses" if file is not None else "missing"][written] += 1
        figures = record_figures(source.value, verdict.images, rule)
        totals["records"] += 1
        if figures is None:
            continue
        totals["with_image"] += bool(verdict.images)
        totals.update(refusals=figures.refusals, refusal_records=figures.refusals > 0,
                      empty_answers=figures.empty_answers, non_latin=figures.non_latin)
        for name, value in (("sources", printable(figures.source)), ("types", figures.type), ("told_by", figures.told_by),
                            ("pairs", figures.pairs), ("words", figures.words), ("content", figures.content)):
            counts[name][value] += 1
        counts["questions"].update(printable(text)[:256] for text in figures.questions)  # compared on 256 characters
        counts["answers"].update(printable(text)[:256] for text in figures.answers)
        for question in (printable(text)[:256] for text in figures.questions):
            words = [word.strip(PUNCTUATION) for word in " ".join(question.split(None, 2)[:2]).lower().split()]
            counts["first"][words[0] if words else ""] += 1
            counts["first_two"][" ".join(word for word in words if word)] += 1
    return {"totals": totals, **counts}


def _assert_matches_reference(card: dict, expected: dict) -> None:
    composition, diversity, problems = card["composition"], card["diversity"], card["problems"]
    totals = expected["totals"]
    assert (composition["records"], composition["with_image"]) == (totals["records"], totals["with_image"])
    assert (composition["sources"], composition["types"]) == (expected["sources"], expected["types"])
    assert composition["types_told_by"] == expected["told_by"]
    assert composition["pairs_per_record_counts"] == {str(k): v for k, v in sorted(expected["pairs"].items())}
    assert card["lengths"]["words_per_record_counts"] == {str(k): v for k, v in sorted(expected["words"].items())}
    for name in ("questions", "answers"):
        assert (diversity[name], diversity[f"distinct_{name}"]) == (expected[name].total(), len(expected[name]))
        repeated = [(row["text"], row["count"]) for row in diversity[f"repeated_{name}"]]
        assert all(expected[name][text] == n for text, n in repeated)  # ties at the 15th may pick others
        assert [n for _, n in repeated] == [n for _, n in _top(Counter({k: v for k, v in expected[name].items()
                                                                          if v > 1}))]
    assert [(row["words"], row["count"]) for row in diversity["question_first_word"]] == _top(expected["first"])
    assert [(row["words"], row["count"]) for row in diversity["question_first_two_words"]] == _top(expected["first_two"])
    contents = expected["content"]
    assert diversity["exact_duplicate_records"] == contents.total() - len(contents)
    assert (problems["rejected"], problems["reasons"]) == (expected["reasons"].total(), expected["reasons"])
    assert (problems["refusal_answers"], problems["refusal_records"]) == (totals["refusals"], totals["refusal_records"])
    assert (problems["empty_answers"], problems["non_latin_records"]) == (totals["empty_answers"], totals["non_latin"])
    images = card["images"]
    assert (images["uses"], images["distinct"]) == (expected["uses"].total(), len(expected["uses"]))
    assert (images["missing_uses"], images["missing"]) == (expected["missing"].total(), len(expected["missing"]))


@pytest.mark.parametrize("surrogates", [False, True])
@pytest.mark.parametrize("folder", [False, True], ids=["no_folder", "image_folder"])
def test_hostile_records_through_the_command(tmp_path, image_folder, surrogates, folder):
    path = tmp_path / "mix.json"
    records = _fuzz_file(path, SEED + surrogates, surrogates)
    card = _cli_card(path, tmp_path / "out", *(("--image-folder", str(image_folder)) if folder else ()))
    assert card["composition"]["records"] == len(records)
    assert card["problems"]["reasons"].get("malformed", 0) > 0 and card["diversity"]["exact_duplicate_records"] > 0
    assert card["diversity"]["repeated_questions"] and card["problems"]["refusal_records"]
    assert not folder or (card["images"]["used_by_several_records"] and card["images"]["missing"])
    _assert_matches_reference(card, _reference(path, image_folder if folder else None))


def test_the_verdicts_are_the_converters(tmp_path, image_folder):
    """Rejections, reasons, and the first examples of each (record, line, field, message, fix) as `check` has them."""
    path = tmp_path / "mix.json"
    _fuzz_file(path, SEED + 2, surrogates=True)
    card = _cli_card(path, tmp_path / "out", "--image-folder", str(image_folder))
    report = check_file(path, image_folder)
    assert (card["problems"]["rejected"], card["problems"]["reasons"]) == (report.rejected, dict(report.reasons))
    firsts: dict[str, list[dict]] = {}
    for rejection in report.rejections:
        if len(examples := firsts.setdefault(rejection.reason, [])) < 3:
            name = f"record {rejection.index}" + (f" (id {rejection.id})" if rejection.id is not None else "")
            examples.append({"record": printable(name), "line": rejection.line, "field": rejection.field,
                             "message": printable(rejection.message), "fix": rejection.fix})
    assert card["problems"]["examples"] == firsts


def test_json_lines_give_the_arrays_card(tmp_path):
    array, lines = tmp_path / "mix.json", tmp_path / "mix.jsonl"
    _fuzz_file(array, SEED + 3, surrogates=False)
    _fuzz_file(lines, SEED + 3, surrogates=False, layout="jsonl")
    from_array, from_lines = _cli_card(array, tmp_path / "a"), _cli_card(lines, tmp_path / "b")
    for card in (from_array, from_lines):
        del card["path"], card["problems"]["examples"]  # the paths and lines differ
    assert from_array == from_lines


@pytest.mark.parametrize("role", [1, 0, None, True, 2.5, ["human"], {"from": "human"}])
def test_a_role_that_is_not_text(tmp_path, role):
    records = [{"id": "a", "conversations": pair("Hi?")},
               {"id": "b", "conversations": [{"from": role, "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]},
               {"id": "c", "conversations": pair("Hi?")}]
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(records))
    card = _cli_card(path, tmp_path / "out")
    assert card["composition"]["records"] == 3
    assert card["problems"]["reasons"] == {"malformed": 1}
    assert card["diversity"]["exact_duplicate_records"] == 1  # a and c; b's turns differ by their role


@pytest.mark.parametrize("record", [
    {"id": "q", "conversations": [{"from": "human", "value": "\ud800 hello"}, {"from": "gpt", "value": "x"}]},
    {"id": "s", "source": "\udc00src", "conversations": pair("Hi?")},
], ids=["question", "source"])
def test_a_lone_surrogate_does_not_crash_the_command(tmp_path, record):
    path = tmp_path / "mix.json"
    path.write_text(json.dumps([record]))
    assert _cli_card(path, tmp_path / "out")["composition"]["records"] == 1
