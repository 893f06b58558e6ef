"""TextVQA: `score` against LLaVA's eval_textvqa.py + M4C re-implemented here from EVAL_TABLE.md, on stand-in
files shaped as the real ones (question_id = image id, repeated; three-line OCR prompts; 10 answers each);
the official script's crash cases as clear errors; `predict` on the tiny model (repeated ids, --limit, resume)."""

from __future__ import annotations

import json

import pytest
from test_eval_data import run_cli, tiny_image
from test_eval_vqa_answers import m4c_reference

from llava_lf.evaluation.tasks.vqa.textvqa import question_in_prompt

SUFFIX = "Answer the question using a single word or phrase."


def prompt(question: str, tokens: str) -> str:
    return f"{question}\nReference OCR token: {tokens}\n{SUFFIX}"


# (image id, question, OCR tokens, 10 human answers); ids repeat as in the real file
QUESTIONS = [
    ("003a8ae2ef43b901", "What is the brand of this camera?", "DAKOTA, DIGITAL, Single-Use, Camera, Pire, digitat",
     ["dakota", "dakota", "Dakota", "dakota digital", "dakota", "DAKOTA", "dakota digital", "dakota", "dakota", "pire"]),
    ("003a8ae2ef43b901", "What does the small white text spell?", "DAKOTA, DIGITAL, Single-Use, Camera",
     ["copenhagen", "copenhagen", "copenhagen", "copenhagen", "copenhagen", "thursday", "copenhagen",
      "copenhagen", "copenhagen", "copenhagen"]),
    ("0054c91397f2fe05", "What number is on the player's jersey?", "22, SOX",
     ["22", "22", "twenty two", "22.", "22", "22", "22", "22", "22", "22"]),
    ("0054c91397f2fe05", "Who makes the bat?", "Louisville, Slugger",
     ["louisville slugger", "louisville slugger", "Louisville Slugger", "louisville", "louisville",
      "louisville slugger", "unanswerable", "louisville slugger", "the louisville slugger", "slugger"]),
    ("00685bc495504d61", "How many items are in the picture?", "",
     ["two", "2", "2", "2", "3", "two", "2", "2", "2", "three"]),
]
# What the model said: LLaVA-layout lines, adversarial texts
ANSWERS = ["Dakota.", "Thursday!", "twenty two", "The Louisville Slugger", "4"]  # 1, .3, .3, 1, 0


def write_questions(path, questions=QUESTIONS):
    rows = [{"question_id": image_id, "image": f"{image_id}.jpg", "text": prompt(q, tokens), "category": "default"}
            for image_id, q, tokens, _ in questions]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_annotations(path, questions=QUESTIONS, extra=()):
    data = [{"question": q.lower(), "image_id": image_id, "image_classes": ["Camera"], "flickr_original_url": "",
             "flickr_300k_url": "", "image_width": 1024, "image_height": 664, "answers": list(answers),
             "question_tokens": q.lower().split(), "question_id": 34602 + i, "set_name": "val"}
            for i, (image_id, q, _, answers) in enumerate(questions)] + list(extra)
    path.write_text(json.dumps({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1",
                                "data": data}), encoding="utf-8")
    return path


def write_answers(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def llava_answer_lines(questions=QUESTIONS, answers=ANSWERS):
    return [{"question_id": image_id, "prompt": prompt(q, tokens), "text": text, "answer_id": f"a{i}",
             "model_id": "llava-v1.5-13b", "metadata": {}}
            for i, ((image_id, q, tokens, _), text) in enumerate(zip(questions, answers))]


def reference_question(text: str) -> str:
    lines = text.split("\n")
    if "Reference OCR token: " in text and len(lines) == 3:
        return (lines[1] if text.startswith("Reference OCR token:") else lines[0]).lower()
    assert len(lines) == 2, "LLaVA's script asserts here"
    return lines[0].lower()


def official_textvqa(annotation_path, answer_path) -> tuple[int, float]:
    """LLaVA's eval_textvqa.py with M4C, as EVAL_TABLE.md describes: (Samples, accuracy in percent)."""
    annotations = {}
    for entry in json.loads(annotation_path.read_text())["data"]:
        annotations[(entry["image_id"], entry["question"].lower())] = entry  # a later duplicate wins
    scores = []
    for line in answer_path.read_text().splitlines():
        result = json.loads(line)
        gt = annotations[(result["question_id"], reference_question(result["prompt"]))]["answers"]
        assert len(gt) == 10
        scores.append(m4c_reference(result["text"], gt))
    return len(scores), 100 * sum(scores) / len(scores)


@pytest.fixture
def files(tmp_path):
    return (write_questions(tmp_path / "llava_textvqa_val_v051_ocr.jsonl"),
            write_annotations(tmp_path / "TextVQA_0.5.1_val.json"))


def score(tmp_path, questions, annotations, predictions, *extra):
    code = run_cli("textvqa", "score", "--predictions", predictions, "--questions", questions,
                   "--annotations", annotations, "--out-dir", tmp_path / "out", *extra)
    payload = json.loads((tmp_path / "out" / "textvqa.json").read_text()) if code == 0 else None
    return code, payload


def test_accuracy_equals_llava_s_script_on_a_llava_answer_file(tmp_path, files):
    questions, annotations = files
    predictions = write_answers(tmp_path / "merge.jsonl", llava_answer_lines())
    code, payload = score(tmp_path, questions, annotations, predictions)
    assert code == 0
    samples, accuracy = official_textvqa(annotations, predictions)
    assert payload["samples"] == samples == 5
    assert payload["accuracy"]["all"] == pytest.approx(accuracy, abs=1e-9)
    assert 0 < accuracy < 100  # the stand-ins mix full, partial and zero scores
    assert not payload["partial"] and payload["missing"] == []
    assert [a["question_id"] for a in payload["answers"]] == [q[0] for q in QUESTIONS]
    markdown = (tmp_path / "out" / "textvqa.md").read_text()
    assert f"{accuracy:.2f}" in markdown and "58.2" in markdown  # ours beside the published 7B figure
    assert (tmp_path / "out" / "textvqa.png").stat().st_size > 0


def test_a_partial_file_is_refused_then_scored_over_its_answers(tmp_path, files):
    questions, annotations = files
    predictions = write_answers(tmp_path / "partial.jsonl", [llava_answer_lines()[i] for i in (0, 3, 4)])
    assert score(tmp_path, questions, annotations, predictions)[0] == 2
    code, payload = score(tmp_path, questions, annotations, predictions, "--allow-partial")
    assert code == 0
    samples, accuracy = official_textvqa(annotations, predictions)
    assert (payload["samples"], payload["accuracy"]["all"]) == (samples, pytest.approx(accuracy, abs=1e-9))
    assert payload["partial"] and len(payload["missing"]) == 2
    assert "Partial" in (tmp_path / "out" / "textvqa.md").read_text()


def test_a_duplicated_annotation_key_uses_the_later_one_as_llava_does(tmp_path, files):
    questions, _ = files
    later = {"question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901",
             "answers": ["kodak"] * 10, "question_id": 99999, "set_name": "val"}
    annotations = write_annotations(tmp_path / "dup.json", extra=[later])
    predictions = write_answers(tmp_path / "merge.jsonl", llava_answer_lines())
    code, payload = score(tmp_path, questions, annotations, predictions)
    assert code == 0 and payload["shadowed_annotations"] == 1
    assert payload["accuracy"]["all"] == pytest.approx(official_textvqa(annotations, predictions)[1], abs=1e-9)
    assert payload["answers"][0]["score"] == 0  # "dakota" against ten "kodak"


def test_crash_cases_of_the_official_script_are_clear_errors(tmp_path, files, capsys):
    questions, annotations = files
    predictions = write_answers(tmp_path / "merge.jsonl", llava_answer_lines())
    # an answer without an annotation (KeyError in LLaVA's script)
    unannotated = write_annotations(tmp_path / "short.json", QUESTIONS[1:])
    assert score(tmp_path, questions, unannotated, predictions)[0] == 2
    assert "no annotation" in capsys.readouterr().err
    # a GT list that is not 10 answers (M4C's assert)
    nine = [(i, q, t, a[:9] if n == 2 else a) for n, (i, q, t, a) in enumerate(QUESTIONS)]
    assert score(tmp_path, questions, write_annotations(tmp_path / "nine.json", nine), predictions)[0] == 2
    assert "has 9 answers" in capsys.readouterr().err
    # a prompt whose shape LLaVA's script asserts on
    odd_row = {"question_id": "0054c91397f2fe05", "image": "0054c91397f2fe05.jpg",
               "text": "Who makes the bat?\nOCR: Louisville\nSome note\n" + SUFFIX, "category": "default"}
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps(odd_row) + "\n")
    odd_answers = write_answers(tmp_path / "odd_answers.jsonl", [{"question_id": odd_row["question_id"],
                                                                  "prompt": odd_row["text"], "text": "x"}])
    assert score(tmp_path, odd, annotations, odd_answers)[0] == 2
    assert "cannot take the question out" in capsys.readouterr().err
    # answers to questions of another file
    assert score(tmp_path, odd, annotations, predictions, "--allow-partial")[0] == 2
    assert "does not ask" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    (prompt("What Is It?", "A, B"), "what is it?"),
    (f"Reference OCR token: A, B\nWhat is it?\n{SUFFIX}", "what is it?"),
    (f"What is it?\n{SUFFIX}", "what is it?"),
    ("OCR tokens: A, B Question: What is it? Short answer:", "what is it?"),
    ("OCR tokens: A, B\nQuestion: Two\nlines? Short answer:", "two\nlines?"),
    ("What is it?", None),
    (f"What is it?\nReference OCR token: A\n\n{SUFFIX}", None),
    ("OCR tokens: A, B Question: no end", None),
])
def test_the_question_comes_back_out_of_the_prompt_as_llava_takes_it(text, expected):
    assert question_in_prompt(text) == expected


@pytest.mark.host  # predict loads the host's template
@pytest.mark.timeout(180)
def test_predict_keeps_repeated_ids_and_the_text_verbatim_and_resumes(tmp_path, files, tiny_llava, capsys):
    questions, annotations = files
    for image_id in {q[0] for q in QUESTIONS}:
        tiny_image(tmp_path / "train_images" / f"{image_id}.jpg")
    out = tmp_path / "answers.jsonl"
    predict = ["textvqa", "predict", "--questions", questions, "--image-folder", tmp_path / "train_images",
               "--model", tiny_llava, "--out", out, "--max-new-tokens", "4", "--device", "cpu", "--limit", "3"]
    assert run_cli(*predict) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    asked = [json.loads(line) for line in questions.read_text().splitlines()][:3]
    assert [(r["question_id"], r["prompt"]) for r in rows] == [(q["question_id"], q["text"]) for q in asked]
    assert rows[0]["question_id"] == rows[1]["question_id"]  # the repeated image id, a str as in the file
    before = out.read_bytes()
    capsys.readouterr()
    assert run_cli(*predict) == 0
    assert out.read_bytes() == before and "0 answered now" in capsys.readouterr().out
    code, payload = score(tmp_path, questions, annotations, out, "--allow-partial")
    assert code == 0 and payload["samples"] == 3
    assert payload["accuracy"]["all"] == pytest.approx(official_textvqa(annotations, out)[1], abs=1e-9)
