"""POPE: yes/no questions about objects in COCO images; accuracy, precision, recall, F1 and yes-ratio per split.

Input is POPE's own layout: one file per split named `*pope_{split}.json` (e.g. `coco_pope_random.json`),
each line `{"question_id", "image", "text", "label": "yes"|"no"}`. Question ids restart in every split,
so a question's key is `{split}/{question_id}`.

Or LLaVA-1.5's single question file (`llava_pope_test.jsonl`): all splits in one file, a `category` naming
the split and ids unique across it, so a question's key is its `question_id` (as in LLaVA's answer files).
Its labels come from a `label` field when it has one, else from POPE's per-split files, matched by split,
image and question text (never by position).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llava_lf.common.jsonl import read_json_rows
from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import answers_for
from llava_lf.evaluation.questions import require_images
from llava_lf.evaluation.report import Report, Row, comparison_table, grouped_bar_chart, listing, markdown_table
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

# LLaVA-1.5's instruction for short answers.
SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
_SPLIT_FILE = re.compile(r".*pope_(?P<split>[A-Za-z0-9_-]+)\.jsonl?$")
SPLIT_ORDER = ("random", "popular", "adversarial")

YesNo = Literal["yes", "no"]


@dataclass(frozen=True)
class PopeQuestion:
    key: str
    split: str
    image: str
    text: str
    label: YesNo | None  # None only when loaded to be asked (predict), not scored


def _rows(path: Path) -> list[dict]:
    return read_json_rows(path, LlavaLfError, allow_array=True)  # a JSON array is accepted too


def _checked(path: Path, row: dict, fields: tuple[str, ...], problems: list[str]) -> str | None:
    """The row's yes/no label (None when a field is absent or the label is neither)."""
    absent = [name for name in fields if name not in row]
    if absent:
        problems.append(f"{path.name}: record {row.get('question_id', '?')} lacks {', '.join(absent)}")
        return None
    if "label" not in fields:
        return ""
    label = str(row["label"]).strip().lower()
    if label not in ("yes", "no"):
        problems.append(f"{path.name}: record {row['question_id']} has label {row['label']!r}; use yes or no")
        return None
    return label


def _split_files(annotation_dir: Path) -> list[PopeQuestion]:
    files = sorted(p for p in annotation_dir.glob("*pope_*.json*") if _SPLIT_FILE.match(p.name))
    if not files:
        raise LlavaLfError(f"no POPE files in {annotation_dir}; expected e.g. coco_pope_random.json, "
                            "coco_pope_popular.json, coco_pope_adversarial.json")
    questions, problems = [], []
    for path in files:
        split = _SPLIT_FILE.match(path.name).group("split")
        for row in _rows(path):
            label = _checked(path, row, ("question_id", "image", "text", "label"), problems)
            if label:
                questions.append(PopeQuestion(f"{split}/{row['question_id']}", split, row["image"], row["text"], label))
    if problems:
        raise LlavaLfError(f"{len(problems)} bad POPE record(s):\n  " + "\n  ".join(problems))
    return questions


def _bare(text: str) -> str:
    """The question without LLaVA's short-answer line, for matching the two layouts' texts."""
    return text.strip().removesuffix(SHORT_ANSWER_INSTRUCTION).strip()


def _question_file(path: Path, annotation_dir: Path | None, labels: bool) -> list[PopeQuestion]:
    rows, problems = _rows(path), []
    needs_labels = labels and any("label" not in row for row in rows)
    if needs_labels and annotation_dir is None:
        raise LlavaLfError(f"{path.name} has no labels; pass --annotations with POPE's coco_pope_{{split}}.json files")
    pool: dict[tuple[str, str, str], list[str]] = {}
    for question in _split_files(annotation_dir) if needs_labels else []:
        pool.setdefault((question.split, question.image, _bare(question.text)), []).append(question.label)
    questions, seen = [], set()
    for row in rows:
        fields = ("question_id", "image", "text", "category") + (("label",) if "label" in row else ())
        label = _checked(path, row, fields, problems)
        if label is None:
            continue
        key = str(row["question_id"])
        if key in seen:
            problems.append(f"{path.name}: question_id {key} appears twice; LLaVA's file has unique ids")
            continue
        seen.add(key)
        split = str(row["category"])
        if not label and needs_labels:
            found = pool.get((split, row["image"], _bare(row["text"])))
            if not found:
                problems.append(f"{path.name}: question {key} ({split}, {row['image']}, {row['text']!r}) is in no "
                                f"coco_pope_{split}.json line; check --annotations")
                continue
            label = found.pop(0)  # identical repeats take the labels in turn
        questions.append(PopeQuestion(key, split, row["image"], _bare(row["text"]), label or None))
    if problems:
        raise LlavaLfError(f"{len(problems)} problem(s) in {path.name}:\n  " + "\n  ".join(problems[:20]))
    return questions


def load_pope(annotation_dir: Path | None, questions_file: Path | None = None, labels: bool = True) -> list[PopeQuestion]:
    """POPE's per-split files, or LLaVA-1.5's single question file (labels from it or from the split files;
    `labels=False` when the questions are only to be asked)."""
    if questions_file is not None:
        return _question_file(questions_file, annotation_dir, labels)
    if annotation_dir is None:
        raise LlavaLfError("give --annotations (POPE's coco_pope_{split}.json files), --questions "
                            "(LLaVA-1.5's llava_pope_test.jsonl), or both")
    return _split_files(annotation_dir)


def prediction_requests(questions: Sequence[PopeQuestion], image_folder: Path,
                        instruction: bool = True) -> list[PredictionRequest]:
    suffix = f"\n{SHORT_ANSWER_INSTRUCTION}" if instruction else ""
    return require_images([PredictionRequest(q.key, q.text + suffix, image_folder / q.image) for q in questions],
                          "--image-folder must be COCO val2014")


def read_yes_no(answer: str) -> tuple[YesNo, bool]:
    """The published reading: take the first sentence, and it is "no" when a word is No/no/not, else "yes".
    The flag says whether the answer named yes or no at all (the rest count as "yes" silently in the
    published script; we count them)."""
    sentence = answer.split(".")[0] if "." in answer else answer
    words = sentence.replace(",", "").split(" ")
    if {"No", "no", "not"} & set(words):
        return "no", True
    clear = bool({"Yes", "yes"} & {w.strip("!?;:") for w in words})
    return "yes", clear


@dataclass(frozen=True)
class PopeMetrics:
    split: str
    questions: int
    tp: int
    fp: int
    tn: int
    fn: int
    unclear: int  # answers that said neither yes nor no (read as "yes", as published)

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.questions if self.questions else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float:
        return (self.tp + self.fp) / self.questions if self.questions else 0.0

    def as_dict(self) -> dict:
        return {"split": self.split, "questions": self.questions, "tp": self.tp, "fp": self.fp, "tn": self.tn,
                "fn": self.fn, "unclear": self.unclear, "accuracy": self.accuracy, "precision": self.precision,
                "recall": self.recall, "f1": self.f1, "yes_ratio": self.yes_ratio}


@dataclass
class PopeResult:
    splits: dict[str, PopeMetrics]
    mean_f1: float  # over splits, the figure set beside the published POPE number
    unclear: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def metrics(split: str, labels: Sequence[YesNo], answers: Sequence[str]) -> PopeMetrics:
    tp = fp = tn = fn = unclear = 0
    for label, answer in zip(labels, answers, strict=True):
        predicted, clear = read_yes_no(answer)
        unclear += not clear
        if predicted == "yes":
            tp, fp = tp + (label == "yes"), fp + (label == "no")
        else:
            tn, fn = tn + (label == "no"), fn + (label == "yes")
    return PopeMetrics(split, len(labels), tp, fp, tn, fn, unclear)


def score(questions: Sequence[PopeQuestion], answers: dict[str, str], missing: Sequence[str] = ()) -> PopeResult:
    splits = sorted({q.split for q in questions},
                    key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    result = {}
    for split in splits:
        answered = [q for q in questions if q.split == split and q.key in answers]
        result[split] = metrics(split, [q.label for q in answered], [answers[q.key] for q in answered])
    unclear = [q.key for q in questions if q.key in answers and not read_yes_no(answers[q.key])[1]]
    mean_f1 = sum(m.f1 for m in result.values()) / len(result) if result else 0.0
    return PopeResult(result, mean_f1, unclear, list(missing))


# The command: `llava-lf eval pope {predict,score}` ---------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--annotations", type=Path, default=None, help="folder of coco_{split}.json files")
    if phase == "predict":
        parser.add_argument("--no-instruction", action="store_true",
                            help="leave out LLaVA-1.5's 'Answer the question using a single word or phrase.'")


def _requests(args: argparse.Namespace) -> list[PredictionRequest]:
    return prediction_requests(load_pope(args.annotations, args.questions, labels=False), args.image_folder,
                                    not args.no_instruction)


def _report(args: argparse.Namespace) -> Report:
    questions = load_pope(args.annotations, args.questions)
    hint = "" if args.questions else "; an answer file made from LLaVA-1.5's llava_test.jsonl needs --questions"
    answers, missing = answers_for([q.key for q in questions], args.predictions, args.allow_partial, hint)
    result = score(questions, answers, missing)
    splits = list(result.splits.values())
    table = markdown_table(
        ["split", "n", "accuracy", "precision", "recall", "F1", "yes-ratio", "unclear"],
        [[m.split, str(m.questions)] + [f"{100 * v:.1f}" for v in (m.accuracy, m.precision, m.recall, m.f1, m.yes_ratio)]
         + [str(m.unclear)] for m in splits])
    rows = [Row("mean F1", "mean F1 over splits", sum(m.questions for m in splits), 100 * result.mean_f1)]
    markdown = "\n\n".join(filter(None, [
        "POPE, in percent.", table, comparison_table(rows, published.POPE),
        "LLaVA-1.5 reports one POPE figure over the three COCO splits; it is set beside our mean F1.",
        f"Answers naming neither yes nor no ({len(result.unclear)}, read as yes as published): "
        f"{listing(result.unclear)}" if result.unclear else "",
        f"Not answered ({len(missing)}): {listing(missing)}" if missing else "",
    ]))
    payload = {"splits": {m.split: m.as_dict() for m in splits}, "mean_f1": result.mean_f1,
               "unclear": result.unclear, "missing": missing}
    summary = "POPE: " + "; ".join(f"{m.split} acc {100 * m.accuracy:.1f} F1 {100 * m.f1:.1f} yes {100 * m.yes_ratio:.1f}"
                                   for m in splits) + f"; mean F1 {100 * result.mean_f1:.1f}"
    series = {name: [100 * getattr(m, attr) for m in splits] for name, attr in
              (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
               ("yes-ratio", "yes_ratio"))}
    return Report("pope", "POPE", payload, markdown,
                  lambda out: grouped_bar_chart([m.split for m in splits], series, out, "POPE", "percent",
                                                lines={f"{p.model}: POPE {p.value:g} (published)": p.value
                                                       for p in published.POPE["mean F1"]}),
                  summary)


TASK = Task("pope", "POPE accuracy, precision, recall, F1 and yes-ratio per split", 128, _report,
            QuestionFiles("LLaVA-1.5's llava_test.jsonl (all splits, a category each, unique ids); labels come from "
                          "--annotations unless its lines carry them", "COCO val2014 images", required=False),
            _arguments, _requests, column=TableColumn("POPE", lambda payload: 100 * payload["mean_f1"]))
