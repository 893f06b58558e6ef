"""Right answers out of questions asked: the one tally behind every benchmark's accuracy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tally:
    questions: int = 0
    correct: int = 0

    def add(self, right: bool) -> None:
        self.questions += 1
        self.correct += right

    @property
    def fraction(self) -> float | None:
        """None where nothing was asked: an empty group has no accuracy (not 0)."""
        return self.correct / self.questions if self.questions else None

    @property
    def percent(self) -> float | None:
        return 100 * self.correct / self.questions if self.questions else None

    def as_dict(self) -> dict:
        return {"questions": self.questions, "correct": self.correct, "accuracy": self.percent}
