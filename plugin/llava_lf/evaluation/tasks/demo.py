"""`llava-lf eval demo`: the demo's benchmark, held-out questions about drawn shapes. Its answer space, its scoring, and its run through the
shared machinery (resumable predictions, then scoring).

Questions are the JSONL the demo writes (`{"qtype", "question", "answer", "image", ...}` per line). The
file has no ids, so a question's id is made from what it asks (its image and its text), never from its
line: a reordered file scores the same, and `predict` resumes it correctly.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from llava_lf.common.jsonl import read_json_rows
from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.predict import GenerationSettings, PredictionRequest, Predictor, model_id
from llava_lf.evaluation.prediction_file import PredictRunSummary, answers_for, run_predictions
from llava_lf.evaluation.questions import require_images
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, listing, markdown_table
from llava_lf.evaluation.tally import Tally
from llava_lf.evaluation.tasks import QuestionFiles, Task

COLOR_NAMES = ("red", "green", "blue", "yellow", "purple", "orange")
KINDS = ("circle", "square", "triangle", "cross")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
COUNT_WORDS = ("one", "two", "three")

QuestionType = Literal["color", "shape", "count", "position", "presence"]
QUESTION_TYPES: tuple[QuestionType, ...] = ("color", "shape", "count", "position", "presence")
ANSWER_SPACE: dict[QuestionType, tuple[str, ...]] = {
    "color": COLOR_NAMES,
    "shape": KINDS,
    "count": ("1", "2", "3"),
    "position": POSITIONS,
    "presence": ("yes", "no"),
}


def chance_accuracy(qtype: QuestionType) -> float:
    """Accuracy of a uniform guess over the answer space of one question type."""
    return 1.0 / len(ANSWER_SPACE[qtype])


_WORDS = {"one": "1", "two": "2", "three": "3"}


def normalise_answer(text: str) -> str:
    """Lowercase, drop punctuation and a leading article, map count words to digits."""
    words = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    if words and words[0] in {"a", "an", "the"}:
        words = words[1:]
    return " ".join(_WORDS.get(word, word) for word in words)


@dataclass
class TypeScore(Tally):
    qtype: str = ""
    chance: float = 0.0  # the accuracy of a uniform guess, a fraction

    @property
    def accuracy(self) -> float | None:
        """A fraction, as the demo's own tables print it."""
        return self.fraction


def load_questions(path: Path) -> list[dict]:
    return read_json_rows(path, LlavaLfError)


def question_ids(questions: Sequence[dict]) -> list[str]:
    """`{image}:{hash of the question text}`; identical repeats get `#2`, `#3` (they are interchangeable)."""
    ids, seen = [], {}
    for question in questions:
        base = f"{question['image']}:{hashlib.sha256(question['question'].encode()).hexdigest()[:12]}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids


def score(questions: list[dict], answers: dict[str, str], only_answered: bool = False) -> dict[str, TypeScore]:
    """Per-type and overall ("all") scores; `answers` maps a question's id (`question_ids`) to the model's text.
    An unanswered question counts wrong, or is left out with `only_answered`."""
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for qid, question in zip(question_ids(questions), questions, strict=True):
        if only_answered and qid not in answers:
            continue
        qtype = question["qtype"]
        total[qtype] += 1
        correct[qtype] += normalise_answer(answers.get(qid, "")) == normalise_answer(question["answer"])
    scores = {qtype: TypeScore(total[qtype], correct[qtype], qtype, chance_accuracy(qtype))
              for qtype in QUESTION_TYPES if total[qtype]}
    n = sum(total.values())
    chance = sum(chance_accuracy(q) * total[q] for q in total) / n if n else 0.0
    scores["all"] = TypeScore(n, sum(correct.values()), "all", chance)
    return scores


def demo_requests(questions: Sequence[dict], image_dir: Path) -> list[PredictionRequest]:
    return require_images([PredictionRequest(qid, question["question"], image_dir / question["image"])
                           for qid, question in zip(question_ids(questions), questions, strict=True)],
                          "--image-folder must be the demo's data/images folder")


def predict_demo(model_dir: Path, questions_path: Path, image_dir: Path, predictions: Path, *,
                 adapter_dir: Path | None = None, label: str = "predict demo", max_new_tokens: int = 8,
                 batch_size: int = 32, device: str = "cpu", template: str = "llava_v1") -> PredictRunSummary:
    requests = demo_requests(load_questions(questions_path), image_dir)
    settings = GenerationSettings(template, max_new_tokens, "float32")
    return run_predictions(
        requests, predictions, model_id(model_dir, adapter_dir),
        lambda: Predictor(model_dir, template=template, max_new_tokens=max_new_tokens, device=device,
                          adapter_dir=adapter_dir, dtype=settings.dtype),
        settings, batch_size=batch_size, desc=label)


def score_demo(questions_path: Path, predictions: Path, allow_partial: bool = False) -> tuple[dict[str, TypeScore], list[str]]:
    """Per-type scores from a predictions file (the demo's own scoring), and the unanswered ids."""
    questions = load_questions(questions_path)
    answers, missing = answers_for(question_ids(questions), predictions, allow_partial)
    return score(questions, answers, only_answered=True), missing


def evaluate_demo(model_dir: Path, questions_path: Path, image_dir: Path, predictions: Path, *,
                  label: str = "eval", max_new_tokens: int = 8, batch_size: int = 32,
                  fresh: bool = False) -> dict[str, TypeScore]:
    """Predict (resuming from `predictions` unless `fresh`) and score: the demo pipeline's evaluation step."""
    if fresh:
        predictions.unlink(missing_ok=True)
    predict_demo(model_dir, questions_path, image_dir, predictions, label=label, max_new_tokens=max_new_tokens,
                 batch_size=batch_size)
    scores, _ = score_demo(questions_path, predictions)
    return scores


# The command: `llava-lf eval demo {predict,score}` ---------------------------------------------------

def _requests(args: argparse.Namespace) -> list[PredictionRequest]:
    return demo_requests(load_questions(args.questions), args.image_folder)


def _report(args: argparse.Namespace) -> Report:
    scores, missing = score_demo(args.questions, args.predictions, args.allow_partial)
    rows = [Row(key, key, s.questions, s.percent) for key, s in scores.items()]
    table = markdown_table(["question type", "n", "chance", "accuracy"],
                           [[k, str(s.questions), cell(100 * s.chance), cell(s.percent)] for k, s in scores.items()])
    markdown = "Demo held-out questions, exact answer match in percent.\n\n" + table
    if missing:
        markdown += f"\n\nNot answered ({len(missing)}): {listing(missing)}"
    chance = {key: 100 * s.chance for key, s in scores.items()}
    payload = {"scores": {k: asdict(s) | {"accuracy": s.accuracy} for k, s in scores.items()}, "missing": missing}
    summary = "demo: " + ", ".join(f"{k} {cell(s.percent)}% (chance {cell(100 * s.chance)})" for k, s in scores.items())
    return Report("demo", "Demo held-out questions", payload, markdown,
                  lambda out: bar_chart(rows, {}, out, "demo held-out accuracy", "accuracy (%)", baseline=chance),
                  summary)


TASK = Task("demo", "the demo's held-out shape questions", 8, _report,
            QuestionFiles("the demo's shapes_test_questions.jsonl", "the demo's data/images"), requests=_requests)
