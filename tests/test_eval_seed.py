"""SEED-Bench through `llava-lf eval seed score`: a stand-in SEED-Bench.json shaped as SEED's (question_type map,
image and video questions with string ids), LLaVA's answer-file layout (int image ids, "v0"-like video ids),
and convert_seed_for_submission.py re-implemented here from its description, compared on adversarial answers;
the string-id quirk, a type with no right answer, partial files."""

from __future__ import annotations

import json

import pytest

from llava_lf.cli import run
from llava_lf.evaluation.tasks import TASKS

QUESTION_TYPES = {"Scene Understanding": 1, "Instance Identity": 2, "Instance Location": 3, "Instance Attributes": 4,
                  "Instances Counting": 5, "Spatial Relation": 6, "Instance Interaction": 7, "Visual Reasoning": 8,
                  "Text Understanding": 9, "Action Recognition": 10, "Action Prediction": 11,
                  "Procedure Understanding": 12}

# SEED id, type id, data type, gold letter, LLaVA's raw answer text
CASES = [
    ("101669", 5, "image", "B", "B"),
    ("101670", 5, "image", "A", "A."),  # exact match only: wrong
    ("101671", 1, "image", "C", "C"),
    ("101672", 1, "image", "D", "(D)"),  # wrong
    ("101673", 1, "image", "A", " A"),  # wrong
    ("101674", 2, "image", "A", "a"),  # wrong
    ("101675", 9, "image", "B", "The answer is B"),  # wrong; type 9 has no right answer (official KeyError)
    ("101676", 2, "image", "C", "C"),
    ("v0", 10, "video", "A", "A"),
    ("v1", 10, "video", "B", "C"),
    ("v2", 12, "video", "D", "D"),
    ("v3", 10, "video", "C", "Ｃ"),  # a full-width letter: wrong
]


def _seed_question(qid: str, type_id: int, data_type: str, gold: str) -> dict:
    """One entry of SEED-Bench.json's `questions`, with the fields the real file has."""
    record = {"answer": gold, "choice_a": "One", "choice_b": "Two", "choice_c": "Three", "choice_d": "Four",
              "data_id": f"{qid}.jpg" if data_type == "image" else f"v1_video/{qid}.mp4", "data_type": data_type,
              "question": "How many towels are in the image?", "question_id": qid, "question_type_id": type_id}
    if data_type == "video":
        record["segment"] = [0.0, 3.5]
    return record


def _answer_id(qid: str) -> int | str:
    """As LLaVA's question file (and so its answer file) spells it: image ids are numbers, video ids strings."""
    return int(qid) if qid.isdigit() else qid


def _write(tmp_path, cases=CASES, answered=None, id_of=_answer_id):
    bench = {"question_type": QUESTION_TYPES, "questions": [_seed_question(*case[:4]) for case in cases]}
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(bench), encoding="utf-8")
    rows = [{"question_id": id_of(qid), "prompt": "How many towels are in the image?\nA. One\nB. Two\nC. Three\n"
             "D. Four\nAnswer with the option's letter from the given choices directly.", "text": text,
             "answer_id": f"a{i}", "model_id": "llava-v1.5-7b", "metadata": {}}
            for i, (qid, *_, text) in enumerate(cases) if answered is None or qid in answered]
    (tmp_path / "merge.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                          encoding="utf-8")
    return bench, rows


def _score(tmp_path, *extra):
    return run(["eval", "seed", "score", "--predictions", str(tmp_path / "merge.jsonl"), "--annotations",
                str(tmp_path / "SEED-Bench.json"), "--out-dir", str(tmp_path / "out"), *extra])


def _payload(tmp_path):
    return json.loads((tmp_path / "out" / "seed.json").read_text(encoding="utf-8"))


# convert_seed_for_submission.py, re-implemented from its description (EVAL_TABLE.md, SEED) -------------

def reference_accuracy(bench: dict, rows: list[dict], only: str | None = None) -> dict:
    """Per type id and total; a SEED id is looked up as an int when it parses as one. Raises KeyError, as the
    official script does, for a type none of whose answered questions is right."""
    by_raw_id = {row["question_id"]: row for row in rows}
    counts, hits = {}, {}
    for q in bench["questions"]:
        if only and q["data_type"] != only:
            continue
        counts[q["question_type_id"]] = counts.get(q["question_type_id"], 0) + 1
        lookup = int(q["question_id"]) if q["question_id"].lstrip("-").isdigit() else q["question_id"]
        if lookup not in by_raw_id:
            hits.setdefault(q["question_type_id"], 0)
        elif by_raw_id[lookup]["text"] == q["answer"]:
            hits[q["question_type_id"]] = hits.get(q["question_type_id"], 0) + 1
    figures = {type_id: 100 * hits[type_id] / counts[type_id] for type_id in sorted(counts)}
    figures["total"] = 100 * sum(hits[t] for t in counts) / sum(counts.values())
    return figures


def reference_upload(bench: dict, rows: list[dict]) -> list[dict]:
    """One line per SEED question in SEED's order, the raw answer; raises on an unanswered question."""
    by_raw_id = {row["question_id"]: row for row in rows}
    return [{"question_id": q["question_id"],
             "prediction": (by_raw_id[q["question_id"]] if q["question_id"] in by_raw_id
                            else by_raw_id[int(q["question_id"])])["text"]} for q in bench["questions"]]


def test_scores_equal_the_official_script_where_it_runs(tmp_path):
    cases = [c if c[0] != "101675" else c[:4] + ("B",) for c in CASES]  # every type gets a right answer
    bench, rows = _write(tmp_path, cases)
    assert _score(tmp_path) == 0
    payload = _payload(tmp_path)
    expected = reference_accuracy(bench, rows)
    assert payload["accuracy"]["all"] == pytest.approx(expected.pop("total"))
    names = {type_id: name for name, type_id in QUESTION_TYPES.items()}
    assert payload["accuracy"]["types"] == pytest.approx({names[t]: value for t, value in expected.items()})
    assert list(payload["accuracy"]["types"]) == [names[t] for t in sorted(expected)]  # in type-id order
    assert payload["accuracy"]["image"] == pytest.approx(reference_accuracy(bench, rows, "image")["total"])
    assert payload["accuracy"]["video"] == pytest.approx(reference_accuracy(bench, rows, "video")["total"])
    assert payload["accuracy"]["all"] == pytest.approx(100 * 6 / 12)  # B, C, C, B, A, D: the exact letters only
    assert TASKS["seed"].column.headline(payload) == payload["accuracy"]["all"]
    assert TASKS["seed"].column.upload is None
    upload = [json.loads(line) for line in (tmp_path / "out" / "seed_upload.jsonl").read_text().splitlines()]
    assert upload == reference_upload(bench, rows)
    assert all(isinstance(row["question_id"], str) for row in upload) and upload[1]["prediction"] == "A."


def test_a_type_with_no_right_answer_scores_zero_where_the_official_script_raises(tmp_path):
    bench, rows = _write(tmp_path)
    with pytest.raises(KeyError):
        reference_accuracy(bench, rows)
    assert _score(tmp_path) == 0
    payload = _payload(tmp_path)
    assert payload["accuracy"]["types"]["Text Understanding"] == 0.0
    assert payload["accuracy"]["all"] == pytest.approx(100 * 5 / 12)
    assert "KeyError" in (tmp_path / "out" / "seed.md").read_text()


def test_string_ids_for_image_questions_score_zero_as_officially_but_upload(tmp_path):
    cases = [c if c[0] != "101675" else c[:4] + ("B",) for c in CASES]
    bench, rows = _write(tmp_path, cases, id_of=str)  # "101669" where LLaVA writes 101669
    expected = reference_accuracy(bench, rows, "image")
    assert expected["total"] == 0.0
    assert _score(tmp_path) == 0
    payload = _payload(tmp_path)
    assert payload["accuracy"]["image"] == 0.0
    assert payload["accuracy"]["video"] == pytest.approx(reference_accuracy(bench, rows, "video")["total"])
    assert len(payload["id_type_mismatch"]) == 8
    upload = [json.loads(line) for line in (tmp_path / "out" / "seed_upload.jsonl").read_text().splitlines()]
    assert upload == reference_upload(bench, rows)  # the official upload works with string ids
    assert "string id" in (tmp_path / "out" / "seed.md").read_text()


def test_unanswered_questions_refused_or_counted_wrong_and_left_out_of_the_upload(tmp_path, capsys):
    answered = {c[0] for c in CASES} - {"101669", "v2"}
    bench, rows = _write(tmp_path, answered=answered)
    with pytest.raises((KeyError, ValueError)):
        reference_upload(bench, rows)  # the official upload raises on the first unanswered question
    assert _score(tmp_path) == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert _score(tmp_path, "--allow-partial") == 0
    payload = _payload(tmp_path)
    assert payload["missing"] == ["101669", "v2"]
    assert payload["accuracy"]["all"] == pytest.approx(100 * 3 / 12)  # counted wrong, as the official accuracy
    upload = [json.loads(line) for line in (tmp_path / "out" / "seed_upload.jsonl").read_text().splitlines()]
    assert [row["question_id"] for row in upload] == [c[0] for c in CASES if c[0] in answered]
    assert "left out of `seed_upload.jsonl`" in (tmp_path / "out" / "seed.md").read_text()


def test_no_video_questions_leaves_video_accuracy_empty(tmp_path):
    _write(tmp_path, [c for c in CASES if c[2] == "image"])
    assert _score(tmp_path) == 0
    payload = _payload(tmp_path)
    assert payload["accuracy"]["video"] is None and payload["accuracy"]["image"] == payload["accuracy"]["all"]


def test_a_bad_annotation_is_named(tmp_path, capsys):
    bench, _ = _write(tmp_path)
    bench["questions"][3]["question_type_id"] = 42
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(bench))
    assert _score(tmp_path) == 2
    error = capsys.readouterr().err
    assert "questions[3]" in error and "101672" in error and "question_type_id" in error
