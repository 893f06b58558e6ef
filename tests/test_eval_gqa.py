"""GQA through `llava-lf eval gqa score`: a stand-in testdev_balanced_questions.json shaped as GQA's, LLaVA's
answer-file layout (string ids, extra fields), and convert_gqa_for_eval.py + eval.py re-implemented here from
their description, compared on adversarial answers; partial files and eval.py's crash cases."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from llava_lf.cli import run
from llava_lf.evaluation.tasks import TASKS


def _gqa_record(question: str, answer: str, structural: str, semantic: str, group: str | None,
                balanced: bool = True, ops: tuple[tuple[str, str], ...] = (("select", "table"),)) -> dict:
    """One value of GQA's questions dict, with every field the real file has."""
    return {
        "semantic": [{"operation": op, "dependencies": [], "argument": arg} for op, arg in ops],
        "entailed": [], "equivalent": [], "question": question, "imageId": "n161313", "isBalanced": balanced,
        "groups": {"global": group, "local": "06-weather_overcast"}, "answer": answer,
        "semanticStr": "select: table", "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        "types": {"detailed": f"{semantic}{structural.title()}", "semantic": semantic, "structural": structural},
        "fullAnswer": f"The answer is {answer}.",
    }


# id: (question, gold, structural, semantic, global group, balanced, LLaVA's raw answer text)
CASES = {
    "201307251": ("Is it overcast?", "no", "verify", "global", None, True, "No"),
    "201640614": ("Who is wearing the dress?", "woman", "query", "rel", "person", True, "Woman.."),
    "202225914": ("Is the table made of wood?", "yes", "verify", "attr", None, True, "Yes, it is"),
    "20968379": ("What is on the table?", "table", "query", "rel", "thing", True, "table.\n"),
    "201774653": ("Is the sky blue or white?", "blue", "choose", "attr", "color", True, "Blue"),
    "20585702": ("Are there both cars and trucks?", "yes", "logical", "obj", None, True, "yes "),
    "2062325": ("Do the cup and the plate have the same color?", "no", "compare", "attr", None, True, "NO."),
    "201681200": ("What kind of furniture is it?", "chair", "query", "cat", "furniture", True, "A chair"),
    "20582590": ("Which side is the man on?", "left", "query", "rel", "side", True, "LEFT"),
    "20896143": ("What color is the car?", "été", "query", "attr", "color", True, "ÉTÉ."),
    "20813220": ("What is the weather like?", "cloudy", "query", "global", "weather", True, ""),
    "201191713": ("Is it a cat?", "yes", "verify", "cat", None, False, "no"),  # not balanced: not scored
}


def _write(tmp_path, cases=CASES, order=None):
    annotations = {qid: _gqa_record(q, gold, st, se, group, bal,
                                    ops=(("select", "table"), ("exist", "?"), ("query", "name"))[: 1 + len(q) % 3])
                   for qid, (q, gold, st, se, group, bal, _) in cases.items()}
    (tmp_path / "testdev_balanced_questions.json").write_text(json.dumps(annotations), encoding="utf-8")
    suffix = "\nAnswer the question using a single word or phrase."
    questions = [{"question_id": qid, "image": "n161313.jpg", "text": case[0] + suffix, "category": "default"}
                 for qid, case in cases.items()]
    (tmp_path / "llava_gqa_testdev_balanced.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    ids = list(cases) if order is None else order
    answers = [{"question_id": qid, "prompt": cases[qid][0] + suffix, "text": cases[qid][6],
                "answer_id": f"aid{index}", "model_id": "llava-v1.5-13b", "metadata": {}}
               for index, qid in enumerate(ids)]
    (tmp_path / "merge.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8")
    return annotations, answers


def _score(tmp_path, *extra):
    return run(["eval", "gqa", "score", "--predictions", str(tmp_path / "merge.jsonl"), "--annotations",
                str(tmp_path / "testdev_balanced_questions.json"), "--out-dir", str(tmp_path / "out"), *extra])


# The official pipeline, re-implemented from its description (EVAL_TABLE.md, GQA) ------------------------

def reference_convert(answer_lines: list[dict]) -> list[dict]:
    """convert_gqa_for_eval.py: every answer line in order, trailing periods off, lower case, nothing else."""
    rows = []
    for line in answer_lines:
        text = line["text"]
        while text[-1:] == ".":
            text = text[:-1]
        rows.append({"questionId": line["question_id"], "prediction": text.lower()})
    return rows


def reference_eval(questions: dict, rows: list[dict]) -> dict:
    """eval.py over the balanced questions: accuracy, binary/open, per type, and the distribution."""
    predictions = {row["questionId"]: row["prediction"] for row in rows}
    balanced = [(qid, q) for qid, q in questions.items() if q["isBalanced"]]
    if any(qid not in predictions for qid, _ in balanced):
        raise KeyError("missing predictions")
    marks = defaultdict(list)
    gold, guessed = defaultdict(lambda: defaultdict(int)), defaultdict(lambda: defaultdict(int))
    for qid, q in balanced:
        hit = 1.0 if predictions[qid] == q["answer"] else 0.0
        kind = "open" if q["types"]["structural"] == "query" else "binary"
        for bucket in ("all", kind, "st:" + q["types"]["structural"], "se:" + q["types"]["semantic"]):
            marks[bucket].append(hit)
        if q["groups"]["global"] is not None:
            gold[q["groups"]["global"]][q["answer"]] += 1
            guessed[q["groups"]["global"]][predictions[qid]] += 1
    chi = [(sum((guessed[g].get(a, 0) - e) ** 2 / e for a, e in gold[g].items()), sum(gold[g].values()))
           for g in gold]
    figures = {bucket: 100 * sum(values) / len(values) for bucket, values in marks.items()}
    figures["distribution"] = sum(c * n for c, n in chi) / sum(n for _, n in chi) / 100
    return figures


def test_scores_equal_the_official_pipeline_on_adversarial_answers(tmp_path):
    annotations, answers = _write(tmp_path)
    assert _score(tmp_path) == 0
    payload = json.loads((tmp_path / "out" / "gqa.json").read_text())
    expected = reference_eval(annotations, reference_convert(answers))
    assert payload["accuracy"]["all"] == pytest.approx(expected["all"])
    assert payload["accuracy"]["binary"] == pytest.approx(expected["binary"])
    assert payload["accuracy"]["open"] == pytest.approx(expected["open"])
    for name, group in payload["structural"].items():
        assert group["accuracy"] == pytest.approx(expected["st:" + name])
    for name, group in payload["semantic"].items():
        assert group["accuracy"] == pytest.approx(expected["se:" + name])
    assert payload["distribution"] == pytest.approx(expected["distribution"])
    # The quirks that change the figure: "Woman.." and "ÉTÉ." are right, "yes " and "table.\n" are wrong.
    assert payload["correct"]["all"] == 6 and payload["questions"]["all"] == 11
    assert sorted(payload["right_if_stripped"]) == ["20585702"]
    assert TASKS["gqa"].column.headline(payload) == payload["accuracy"]["all"]
    assert (tmp_path / "out" / "gqa.md").read_text().count("62") >= 1  # the published 7B figure beside ours
    assert (tmp_path / "out" / "gqa.png").stat().st_size > 0


def test_predictions_file_is_the_converter_output_in_answer_file_order(tmp_path):
    order = list(reversed(CASES))  # a merged multi-GPU file need not be in question order
    _, answers = _write(tmp_path, order=order)
    assert _score(tmp_path, "--questions", str(tmp_path / "llava_gqa_testdev_balanced.jsonl")) == 0
    written = json.loads((tmp_path / "out" / "gqa_predictions.json").read_text(encoding="utf-8"))
    assert written == reference_convert(answers)
    assert [row["questionId"] for row in written] == order and all(isinstance(r["questionId"], str) for r in written)


def test_unanswered_balanced_question_is_refused_or_counted_wrong(tmp_path, capsys):
    annotations, answers = _write(tmp_path)
    kept = [a for a in answers if a["question_id"] not in ("201640614", "201191713")]
    (tmp_path / "merge.jsonl").write_text("".join(json.dumps(a) + "\n" for a in kept))
    with pytest.raises(KeyError):  # the official eval.py refuses the file
        reference_eval(annotations, reference_convert(kept))
    assert _score(tmp_path) == 2
    assert "201640614" in capsys.readouterr().err
    assert _score(tmp_path, "--allow-partial") == 0
    payload = json.loads((tmp_path / "out" / "gqa.json").read_text())
    assert payload["missing"] == ["201640614"]  # the unbalanced question needs no answer
    assert payload["correct"]["all"] == 5 and payload["questions"]["all"] == 11  # "Woman.." no longer counts
    assert "Not answered (1 balanced, counted wrong" in (tmp_path / "out" / "gqa.md").read_text()


def test_no_balanced_question_with_a_global_group_does_not_crash(tmp_path):
    cases = {qid: case[:4] + (None,) + case[5:] for qid, case in CASES.items()}
    annotations, answers = _write(tmp_path, cases)
    with pytest.raises(ZeroDivisionError):  # where eval.py divides by zero
        reference_eval(annotations, reference_convert(answers))
    assert _score(tmp_path) == 0
    payload = json.loads((tmp_path / "out" / "gqa.json").read_text())
    assert payload["distribution"] is None and payload["accuracy"]["all"] == pytest.approx(600 / 11)
    assert "divides by zero" in (tmp_path / "out" / "gqa.md").read_text()


def test_answers_to_unknown_questions_and_bad_annotations_are_named(tmp_path, capsys):
    _, answers = _write(tmp_path)
    (tmp_path / "merge.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers)
                                          + json.dumps({"question_id": "999", "text": "no"}) + "\n")
    assert _score(tmp_path) == 2
    assert "999" in capsys.readouterr().err
    _write(tmp_path)
    broken = json.loads((tmp_path / "testdev_balanced_questions.json").read_text())
    del broken["20968379"]["types"]["structural"]
    (tmp_path / "testdev_balanced_questions.json").write_text(json.dumps(broken))
    assert _score(tmp_path) == 2
    error = capsys.readouterr().err
    assert "20968379" in error and "types.structural" in error


def test_steps_and_words_follow_eval_py(tmp_path):
    from llava_lf.evaluation.tasks.gqa import load_annotations

    record = _gqa_record("What is on the  table?", "cup", "query", "rel", "thing",
                         ops=(("select", "table"), ("relate", "_,on,s"), ("exist", "?"), ("query", "name"),
                              ("choose name", "x")))
    (tmp_path / "q.json").write_text(json.dumps({"1": record}))
    [question] = load_annotations(tmp_path / "q.json")
    assert (question.steps, question.words) == (2, 5)  # exist, "query: name", "choose name: x" are not steps
