"""VQAv2 and VizWiz uploads, as data, against LLaVA's converters re-implemented here from EVAL_TABLE.md, from
LLaVA-layout answer files (int ids, extra fields, a later duplicate winning) and ours; partial files."""

from __future__ import annotations

import json
import random

import pytest
from test_eval_data import run_cli
from test_eval_vqa_answers import reference

from llava_lf.evaluation.tasks import TASKS

SUFFIX = "Answer the question using a single word or phrase."
VIZWIZ_SUFFIX = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SUFFIX
ADVERSARIAL = ["Yes", "No.", "2", "two", "none", "The ball", "U.S.A.", "(B)", "x-ray", "it's red", "Yes\nNo",
               "wait" + "." * 40, "1,000", "3.", "", "\t tabs\t", "Café", "an apple", "Yes, there is", "dont know"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def vqav2_question(question_id: int) -> dict:
    image = question_id // 1000
    return {"question_id": question_id, "image": f"COCO_test2015_{image:012d}.jpg",
            "text": f"Is the ball flying towards the batter {question_id}?\n{SUFFIX}", "category": "default"}


def llava_line(question: dict, text: str, n: int) -> dict:
    return {"question_id": question["question_id"], "prompt": question["text"], "text": text,
            "answer_id": f"Xq{n}kT", "model_id": "llava-v1.5-13b", "metadata": {}}


def our_line(question: dict, text: str, n: int) -> dict:
    return {"question_id": question["question_id"], "prompt": question["text"], "text": text,
            "model_id": "/models/llava-7b", "answer_id": f"{n:032x}",
            "metadata": {"question_hash": f"{n:016x}", "settings": {"template": "llava_v1", "max_new_tokens": 128,
                                                                    "dtype": "float16", "do_sample": False}}}


def llava_vqav2_converter(answer_path, test2015_path) -> list[dict]:
    """convert_vqav2_for_submission.py as described: a dict by question_id (later wins, unparsable lines
    skipped), then every test2015 question, "" where unanswered."""
    results = []
    for line in answer_path.read_text().splitlines(keepends=True):
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    texts = {r["question_id"]: r["text"] for r in results}
    return [{"question_id": q["question_id"], "answer": reference(texts[q["question_id"]]) if q["question_id"] in texts
             else ""} for q in map(json.loads, test2015_path.read_text().splitlines())]


def llava_vizwiz_converter(answer_path, question_path) -> list[dict]:
    """convert_vizwiz_for_submission.py as described: asserts every question is answered."""
    texts = {r["question_id"]: r["text"] for r in map(json.loads, answer_path.read_text().splitlines())}
    out = []
    for q in map(json.loads, question_path.read_text().splitlines()):
        assert q["question_id"] in texts
        out.append({"image": q["image"], "answer": reference(texts[q["question_id"]])})
    return out


@pytest.fixture
def vqav2_files(tmp_path):
    test2015 = [vqav2_question(262144000 + 1000 * i + j) for i in range(12) for j in range(3)]
    test_dev = test2015[::2]  # test-dev is a subset of test2015
    return (write_jsonl(tmp_path / "llava_vqav2_mscoco_test-dev2015.jsonl", test_dev),
            write_jsonl(tmp_path / "llava_vqav2_mscoco_test2015.jsonl", test2015), test_dev)


def vqav2_score(tmp_path, files, predictions, *extra):
    dev, test2015, _ = files
    return run_cli("vqav2", "score", "--predictions", predictions, "--questions", dev, "--upload-questions", test2015,
                   "--out-dir", tmp_path / "out", *extra)


@pytest.mark.parametrize("layout", [llava_line, our_line])
def test_vqav2_upload_equals_llava_s_converter(tmp_path, vqav2_files, layout):
    _, test2015, dev = vqav2_files
    lines = [layout(q, ADVERSARIAL[n % len(ADVERSARIAL)], n) for n, q in enumerate(dev)]
    lines.insert(3, layout(dev[5], "an earlier answer", 99))  # answered twice: the later line wins
    random.Random(0).shuffle(lines[6:])
    predictions = write_jsonl(tmp_path / "merge.jsonl", lines)
    assert vqav2_score(tmp_path, vqav2_files, predictions) == 0
    upload = json.loads((tmp_path / "out" / "vqav2_upload.json").read_text())
    assert upload == llava_vqav2_converter(predictions, test2015)
    assert all(type(row["question_id"]) is int for row in upload)
    assert len(upload) == 36 and sum(row["answer"] == "" for row in upload[1::2]) == 18  # unasked ones
    payload = json.loads((tmp_path / "out" / "vqav2.json").read_text())
    assert (payload["answered"], payload["unasked"], payload["missing"]) == (len(dev), 18, [])
    assert payload["answered_twice"] == [str(dev[5]["question_id"])]
    processor = payload["processor"]
    assert sum(processor[k] for k in ("unchanged", "case_or_spacing", "rewritten")) == len(dev)
    assert {"answer": "U.S.A.", "processed": "usa"} in processor["examples"]
    assert "accuracy" not in json.dumps(payload)
    assert "vqav2_upload.json" in (tmp_path / "out" / "vqav2.md").read_text()
    assert (tmp_path / "out" / "vqav2.png").stat().st_size > 0
    column = TASKS["vqav2"].column
    assert (column.column, column.headline(payload), column.upload) == ("VQAv2", None, "vqav2_upload.json")


def test_vqav2_partial_file_needs_allow_partial_and_then_uploads_empty_answers(tmp_path, vqav2_files, capsys):
    _, test2015, dev = vqav2_files
    predictions = write_jsonl(tmp_path / "part.jsonl", [llava_line(q, "yes", n) for n, q in enumerate(dev[:-2])])
    assert vqav2_score(tmp_path, vqav2_files, predictions) == 2
    error = capsys.readouterr().err
    assert "2 missing" in error and "--allow-partial" in error
    assert vqav2_score(tmp_path, vqav2_files, predictions, "--allow-partial") == 0
    assert json.loads((tmp_path / "out" / "vqav2_upload.json").read_text()) == llava_vqav2_converter(predictions, test2015)
    payload = json.loads((tmp_path / "out" / "vqav2.json").read_text())
    assert payload["missing"] == [str(q["question_id"]) for q in dev[-2:]]
    assert "Partial" in (tmp_path / "out" / "vqav2.md").read_text()


def test_vqav2_refuses_answers_to_questions_it_did_not_ask(tmp_path, vqav2_files, capsys):
    stray = vqav2_question(999)
    predictions = write_jsonl(tmp_path / "stray.jsonl", [llava_line(stray, "yes", 0)])
    assert vqav2_score(tmp_path, vqav2_files, predictions, "--allow-partial") == 2
    assert "not in --questions" in capsys.readouterr().err


def vizwiz_question(question_id: int) -> dict:
    return {"question_id": question_id, "image": f"VizWiz_test_{question_id:08d}.jpg",
            "text": f"What is this? and what color is it?\n{VIZWIZ_SUFFIX}", "category": "default"}


@pytest.fixture
def vizwiz_questions(tmp_path):
    questions = [vizwiz_question(i) for i in range(24)]
    return write_jsonl(tmp_path / "llava_test.jsonl", questions), questions


def vizwiz_score(tmp_path, question_path, predictions, *extra):
    return run_cli("vizwiz", "score", "--predictions", predictions, "--questions", question_path,
                   "--out-dir", tmp_path / "out", *extra)


@pytest.mark.parametrize("layout", [llava_line, our_line])
def test_vizwiz_upload_equals_llava_s_converter_in_question_order(tmp_path, vizwiz_questions, layout):
    question_path, questions = vizwiz_questions
    lines = [layout(q, (["Unanswerable", "unanswerable."] + ADVERSARIAL)[n % 22], n) for n, q in enumerate(questions)]
    lines.append(layout(questions[4], "A second, later answer!", 50))  # the later line wins
    random.Random(1).shuffle(lines[:-1])
    predictions = write_jsonl(tmp_path / "answers.jsonl", lines)
    assert vizwiz_score(tmp_path, question_path, predictions) == 0
    upload = json.loads((tmp_path / "out" / "vizwiz_upload.json").read_text())
    assert upload == llava_vizwiz_converter(predictions, question_path)
    assert upload[1] == {"image": "VizWiz_test_00000001.jpg", "answer": "unanswerable"}
    assert upload[4]["answer"] == "second later answer"
    payload = json.loads((tmp_path / "out" / "vizwiz.json").read_text())
    assert (payload["answered"], payload["missing"], payload["answered_twice"]) == (24, [], ["4"])
    column = TASKS["vizwiz"].column
    assert (column.column, column.headline(payload), column.upload) == ("VizWiz", None, "vizwiz_upload.json")


def test_vizwiz_partial_file_is_refused_unless_allowed(tmp_path, vizwiz_questions, capsys):
    question_path, questions = vizwiz_questions
    predictions = write_jsonl(tmp_path / "part.jsonl", [llava_line(q, "Red", n) for n, q in enumerate(questions)
                                                        if n not in (3, 17)])
    with pytest.raises(AssertionError):
        llava_vizwiz_converter(predictions, question_path)  # the official converter stops
    assert vizwiz_score(tmp_path, question_path, predictions) == 2
    error = capsys.readouterr().err
    assert "answers 22 of 24 questions (2 missing" in error and "--allow-partial" in error
    assert not (tmp_path / "out" / "vizwiz_upload.json").exists()
    assert vizwiz_score(tmp_path, question_path, predictions, "--allow-partial") == 0
    upload = json.loads((tmp_path / "out" / "vizwiz_upload.json").read_text())
    assert [row["image"] for row in upload] == [q["image"] for q in questions]
    assert [n for n, row in enumerate(upload) if row["answer"] == ""] == [3, 17]
    assert {row["answer"] for n, row in enumerate(upload) if n not in (3, 17)} == {"red"}
    payload = json.loads((tmp_path / "out" / "vizwiz.json").read_text())
    assert payload["missing"] == ["3", "17"] and "refuses" in (tmp_path / "out" / "vizwiz.md").read_text()
