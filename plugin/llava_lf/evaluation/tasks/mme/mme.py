"""MME: two yes/no questions per image in 14 subtasks, read and scored as MME's eval_tool calculation.py does
(acc + acc+ per subtask; perception and cognition sums), with the eval_tool files LLaVA's converter writes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llava_lf.evaluation import published
from llava_lf.evaluation.prediction_file import answered, by_id_and_prompt, read_answers
from llava_lf.evaluation.questions import read_question_file
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, markdown_table, notes
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

from .mme_ground_truth import MmeQuestion, eval_tool_line, match_ground_truth, one_line

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
EVAL_TOOL_DIR = "mme_eval_tool"

Reading = Literal["yes", "no", "other"]


def read_yes_no(answer: str) -> Reading:
    """calculation.py's reading: lower case; exactly yes or no, else the first four characters: "yes" in them
    gives yes, else "no" in them gives no, else other (counted wrong). So "Eyes" is yes and "None" is no."""
    text = answer.lower()
    if text in ("yes", "no"):
        return text  # type: ignore[return-value]
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


@dataclass
class SubtaskScore:
    questions: int = 0
    correct: int = 0
    images: int = 0
    images_all_right: int = 0  # acc+: every question of the image right
    other: int = 0  # answers read as neither yes nor no
    unanswered: int = 0
    confusion: dict[str, int] = field(default_factory=lambda: {"TP": 0, "FN": 0, "TN": 0, "FP": 0})

    @property
    def acc(self) -> float:
        return self.correct / self.questions

    @property
    def acc_plus(self) -> float:
        return self.images_all_right / self.images

    @property
    def score(self) -> float:
        return 100 * self.acc + 100 * self.acc_plus

    def as_dict(self) -> dict:
        tp, fn, tn, fp = (self.confusion[k] for k in ("TP", "FN", "TN", "FP"))
        return {"score": self.score, "acc": 100 * self.acc, "acc_plus": 100 * self.acc_plus,
                "questions": self.questions, "correct": self.correct, "images": self.images,
                "images_all_right": self.images_all_right, "other": self.other, "unanswered": self.unanswered,
                **self.confusion,  # over the yes/no readings, "other" left out, yes the positive class
                "precision": 100 * tp / (tp + fp) if tp + fp else None,
                "recall": 100 * tp / (tp + fn) if tp + fn else None}


def score(questions: Sequence[MmeQuestion], answers: dict[str, str]) -> dict[str, SubtaskScore]:
    """Per subtask, in MME's order (perception, cognition, then any other). Questions are paired by image (their
    question_id); calculation.py pairs consecutive lines, which is the same on files in question order. An
    unanswered question counts wrong."""
    images: dict[tuple[str, str], list[bool]] = {}
    subtasks: dict[str, SubtaskScore] = {}
    for q in questions:
        task = subtasks.setdefault(q.subtask, SubtaskScore())
        answer = answers.get(q.key)
        truth = q.gt_answer.lower()
        reading = None if answer is None else read_yes_no(answer)
        right = reading == truth
        task.questions += 1
        task.correct += right
        task.unanswered += answer is None
        task.other += reading == "other"
        if reading in ("yes", "no"):
            task.confusion[{("yes", "yes"): "TP", ("yes", "no"): "FN", ("no", "no"): "TN",
                            ("no", "yes"): "FP"}[(truth, reading)]] += 1
        images.setdefault((q.subtask, q.question_id), []).append(right)
    for (subtask, _), marks in images.items():
        subtasks[subtask].images += 1
        subtasks[subtask].images_all_right += all(marks)
    order = {name: index for index, name in enumerate(PERCEPTION + COGNITION)}
    return dict(sorted(subtasks.items(), key=lambda item: order.get(item[0], len(order))))


def position_mismatches(in_file_order: Sequence[MmeQuestion]) -> dict[str, int]:
    """Per subtask, how many of calculation.py's consecutive-line pairs (in answer-file order) join two images,
    plus one for a lone last line (it asserts there): where these are non-zero, it scores differently."""
    lines: dict[str, list[str]] = {}
    for q in in_file_order:
        lines.setdefault(q.subtask, []).append(q.question_id)
    found = {}
    for subtask, ids in lines.items():
        bad = sum(ids[i] != ids[i + 1] for i in range(0, len(ids) - 1, 2)) + len(ids) % 2
        if bad:
            found[subtask] = bad
    return found


def eval_tool_files(in_file_order: Sequence[tuple[MmeQuestion, str]]) -> dict[str, str]:
    """`{subtask}.txt` contents as convert_answer_to_mme.py writes them, lines in answer-file order."""
    files: dict[str, list[str]] = {}
    for question, answer in in_file_order:
        files.setdefault(question.subtask, []).append(eval_tool_line(question, answer))
    return {subtask: "".join(lines) for subtask, lines in files.items()}


# The command: `llava-lf eval mme {predict,score}` ----------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "score":
        parser.add_argument("--data", type=Path, required=True,
                            help="MME_Benchmark_release_version (the ground-truth .txt files)")


def _shown(question: MmeQuestion) -> str:
    return f"{question.question_id} ({question.gt_question})"


def _sum(scores: dict[str, SubtaskScore], names: Sequence[str]) -> float | None:
    present = [scores[name].score for name in names if name in scores]
    return sum(present) if present else None


def _report(args: argparse.Namespace) -> Report:
    questions = match_ground_truth(read_question_file(args.questions), args.data)
    by_key = {q.key: q for q in questions}
    answers = read_answers(args.predictions, by_id_and_prompt)
    records, missing = answered(list(by_key), answers, args.allow_partial)
    scores = score(questions, {key: record.text for key, record in records.items()})
    in_file_order = [(by_key[key], record.text) for key, record in answers.records.items()]
    mismatched = position_mismatches([q for q, _ in in_file_order])
    flattened = [q.key for q, text in in_file_order if one_line(text) != text]
    perception, cognition = _sum(scores, PERCEPTION), _sum(scores, COGNITION)
    absent = [name for name in PERCEPTION + COGNITION if name not in scores]
    column = published.column("MME", key="perception")
    totals = [Row("perception", "perception (10 subtasks, of 2000)", sum(scores[n].questions for n in PERCEPTION
                                                                          if n in scores), perception),
              Row("cognition", "cognition (4 subtasks, of 800)", sum(scores[n].questions for n in COGNITION
                                                                      if n in scores), cognition)]
    table = markdown_table(
        ["subtask", "questions", "images", "acc", "acc+", "score", "other", "unanswered"],
        [[name, str(s.questions), str(s.images), f"{100 * s.acc:.2f}", f"{100 * s.acc_plus:.2f}",
          f"{s.score:.2f}", str(s.other), str(s.unanswered)] for name, s in scores.items()])
    markdown = "\n\n".join(filter(None, [
        "MME, scores as calculation.py computes them (subtask score = 100·acc + 100·acc+, acc+ = both questions "
        "of an image right; an answer is yes or no by its first four characters, else counted wrong).",
        comparison_table(totals, column), notes(column), table,
        f"Subtasks absent from the question file (left out of the sums; calculation.py fails on them): "
        f"{', '.join(absent)}" if absent else "",
        f"Not answered ({len(missing)}, counted wrong; each image's two answers are paired by its question_id): "
        f"{listing([_shown(by_key[k]) for k in missing])}" if missing else "",
        "In answer-file order, calculation.py's consecutive-line pairs would join two images here (it pairs by "
        "position; we pair by image): " + ", ".join(f"{k} {v}" for k, v in mismatched.items()) if mismatched else "",
        f"Answers holding a tab or line break ({len(flattened)}): scored as they are; in `{EVAL_TOOL_DIR}/` each "
        f"tab, CR and LF became a space, so calculation.py reads the line (it crashes on the raw text): "
        f"{listing([_shown(by_key[k]) for k in flattened])}" if flattened else "",
        f"`{EVAL_TOOL_DIR}/{{subtask}}.txt` hold the lines convert_answer_to_mme.py writes, for MME's "
        "calculation.py --results_dir.",
    ]))
    payload = {"perception": perception, "cognition": cognition,
               "tasks": {name: s.as_dict() for name, s in scores.items()},
               "missing": missing, "absent_subtasks": absent, "position_pair_mismatches": mismatched,
               "flattened_answers": flattened}
    summary = (f"MME: perception {cell(perception, 2)} (of 2000), cognition {cell(cognition, 2)} (of 800)"
               + (f"; {len(missing)} unanswered counted wrong" if missing else "")
               + (f"; {len(flattened)} answers with tabs/line breaks flattened in the eval_tool files"
                  if flattened else ""))
    rows = [Row(name, name, s.questions, s.score) for name, s in scores.items()]
    files = tuple((f"{EVAL_TOOL_DIR}/{subtask}.txt", _writer(text))
                  for subtask, text in eval_tool_files(in_file_order).items())
    return Report("mme", "MME", payload, markdown,
                  lambda out: bar_chart(rows, {}, out, "MME subtask scores (acc + acc+)", "score", ymax=200.0),
                  summary, files=files)


def _writer(text: str):
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")
    return write


TASK = Task("mme", "MME perception and cognition scores (MME's calculation.py) and its eval_tool files", 128,
            _report, QuestionFiles("LLaVA's llava_mme.jsonl", "MME_Benchmark_release_version"), _arguments,
            key_of=by_id_and_prompt, column=TableColumn("MME", lambda payload: payload["perception"], digits=1))
