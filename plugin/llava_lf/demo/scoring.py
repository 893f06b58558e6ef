"""Score the demo's held-out questions: accuracy per question type, next to chance."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .shapes import QUESTION_TYPES, chance_accuracy

_WORDS = {"one": "1", "two": "2", "three": "3"}


def normalise_answer(text: str) -> str:
    """Lowercase, drop punctuation and a leading article, map count words to digits."""
    words = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    if words and words[0] in {"a", "an", "the"}:
        words = words[1:]
    return " ".join(_WORDS.get(word, word) for word in words)


@dataclass(frozen=True)
class TypeScore:
    qtype: str
    questions: int
    correct: int
    chance: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0


def load_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(questions: list[dict], answers: dict[str, str]) -> dict[str, TypeScore]:
    """Per-type and overall ("all") scores; `answers` maps a question's index (as str) to the model's text."""
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for index, question in enumerate(questions):
        qtype = question["qtype"]
        total[qtype] += 1
        correct[qtype] += normalise_answer(answers.get(str(index), "")) == normalise_answer(question["answer"])
    scores = {qtype: TypeScore(qtype, total[qtype], correct[qtype], chance_accuracy(qtype))
              for qtype in QUESTION_TYPES if total[qtype]}
    n = sum(total.values())
    chance = sum(chance_accuracy(q) * total[q] for q in total) / n if n else 0.0
    scores["all"] = TypeScore("all", n, sum(correct.values()), chance)
    return scores
