"""LLaVA's `eval_science_qa.py`, re-implemented once from its description (docs/eval.md), for the tests that set
our ScienceQA scorer beside it on the same answer files."""

from __future__ import annotations

import re

OPTIONS = ["A", "B", "C", "D", "E"]  # its --options default
ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def eval_science_qa(problems: dict[str, dict], rows: list[dict]) -> dict:
    """`problems`: each problem of the split, in order, with its `choices` and `answer` (an index); `rows`: the
    answer file's records. The exact letter, an "X. " prefix, or exactly one `The answer is ([A-Z]).` (the last
    `.` any character), else FAILED; a letter past the choices is wrong; a problem with no prediction is FAILED
    with the prompt 'Unknown'; IMG is every prediction whose stored prompt holds `<image>`. Returns the two
    printed figures (percent) and the answered problems no rule could read."""
    predictions = {row["question_id"]: row for row in rows}
    correct = total = img_correct = img_total = 0
    failed = []
    for pid, problem in problems.items():
        prediction = predictions.get(pid, {"text": "FAILED", "prompt": "Unknown"})
        text = prediction["text"]
        if text in OPTIONS:
            answer = text
        elif len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
            answer = text[0]
        else:
            found = ANSWER_IS.findall(text)
            answer = found[0] if len(found) == 1 else "FAILED"
        if answer == "FAILED" and pid in predictions:
            failed.append(pid)
        valid = OPTIONS[: len(problem["choices"])]
        right = (OPTIONS.index(answer) if answer in valid else -1) == problem["answer"]
        multimodal = "<image>" in prediction["prompt"]
        correct, total = correct + right, total + 1
        img_correct, img_total = img_correct + (right and multimodal), img_total + multimodal
    return {"all": correct / total * 100, "IMG": img_correct / img_total * 100, "failed": failed}
