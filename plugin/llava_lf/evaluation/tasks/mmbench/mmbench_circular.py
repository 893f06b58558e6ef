"""MMBench's circular evaluation, estimated locally: VLMEvalKit's rule-based letter extraction (`can_infer`)
on each answer, and a question right only when every rotated copy of it is answered right. No GPT judge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from llava_lf.evaluation.tally import Tally

# The circular copies of a question are rows of their own, at index + k * COPY_STRIDE.
COPY_STRIDE = 1_000_000
# Characters the rule-based extraction reads as spaces before it splits the answer into tokens.
_SEPARATORS = str.maketrans(dict.fromkeys(".()[],:;!*#{}", " "))
# Answers VLMEvalKit takes as a refusal (letter Z: wrong) before looking for a letter.
REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
# A failed API call is never read as a letter (the option text may still match).
_API_FAILURE = "Failed to obtain answer via API"

Rule = Literal["letter", "option_text", "refusal", "unreadable"]


@dataclass(frozen=True)
class Inference:
    letter: str | None  # an option letter, "Z" for a refusal, None when the rules cannot read the answer
    rule: Rule


def _letter_rule(answer: str, choices: Mapping[str, str]) -> Inference | None:
    if _API_FAILURE in answer:
        return None
    if any(phrase in answer for phrase in REFUSALS):
        return Inference("Z", "refusal")
    tokens = answer.translate(_SEPARATORS).split()
    named = [letter for letter in choices if letter in tokens]
    if len(named) == 1:
        # VLMEvalKit reads the letter only near the end: its first occurrence among the last four tokens.
        if tokens.index(named[0]) > len(tokens) - 5:
            return Inference(named[0], "letter")
        return None
    if not named and "Z" in tokens:
        return Inference("Z", "refusal")
    return None


def infer_letter(answer: str, choices: Mapping[str, str]) -> Inference:
    """The option a free-text answer names. `choices` maps each option letter the TSV fills to its text.
    First a letter: exactly one option letter stands as a token of its own once `.()[],:;!*#{}` are read
    as spaces, among the last four tokens. Failing that, the option text: in an answer at most twice as
    long as the options' texts together, exactly one option's (lower-cased) text occurs."""
    by_letter = _letter_rule(answer, choices)
    if by_letter is not None:
        return by_letter
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(text)) for text in choices.values()):
        return Inference(None, "unreadable")  # VLMEvalKit does not look for option text in a long answer
    containing = [letter for letter, text in choices.items() if str(text).lower() in lowered]
    if len(containing) == 1:
        return Inference(containing[0], "option_text")
    return Inference(None, "unreadable")


@dataclass(frozen=True)
class CircularRow:
    index: int
    choices: dict[str, str]  # letter -> option text, the options the TSV fills
    answer: str  # the right letter for this rotation
    category: str | None
    l2_category: str | None

    @property
    def group(self) -> int:
        return self.index % COPY_STRIDE


@dataclass
class CircularResult:
    overall: Tally  # circular: a question counts when all its rotations are right
    categories: dict[str, Tally]
    l2_categories: dict[str, Tally]
    single_pass: Tally  # the first rotation (k = 0) of each question alone, for comparison
    rules: dict[str, int]  # answers read by each rule
    unreadable: list[int] = field(default_factory=list)  # row indices whose answer no rule could read (wrong)
    refused: list[int] = field(default_factory=list)  # row indices read as Z (wrong)
    missing: list[int] = field(default_factory=list)  # row indices with no answer (wrong)

    def as_dict(self) -> dict:
        return {"all": self.overall.percent, "overall": self.overall.as_dict(),
                "categories": {name: acc.percent for name, acc in self.categories.items()},
                "l2_categories": {name: acc.percent for name, acc in self.l2_categories.items()},
                "category_counts": {name: acc.as_dict() for name, acc in self.categories.items()},
                "l2_category_counts": {name: acc.as_dict() for name, acc in self.l2_categories.items()},
                "single_pass": self.single_pass.as_dict(), "rules": self.rules,
                "unreadable": self.unreadable, "refused": self.refused, "missing": self.missing}


def _tally(flags: Mapping[int, bool], label_of: Mapping[int, str | None]) -> dict[str, Tally]:
    totals: dict[str, list[int]] = {}
    for group, right in flags.items():
        label = label_of[group]
        if label is None:
            continue
        counts = totals.setdefault(label, [0, 0])
        counts[0] += 1
        counts[1] += right
    return {label: Tally(n, c) for label, (n, c) in sorted(totals.items())}


def circular_score(rows: Sequence[CircularRow], answers: Mapping[int, str]) -> CircularResult:
    """Accuracy over the questions (rows grouped by index mod 10^6). An unanswered or unreadable rotation
    makes its question wrong, as the server's rules would without their GPT judge."""
    rules = {"letter": 0, "option_text": 0, "refusal": 0, "unreadable": 0}
    unreadable, refused, missing = [], [], []
    question_right: dict[int, bool] = {}
    first_right: dict[int, bool] = {}
    first_row: dict[int, CircularRow] = {}
    for row in sorted(rows, key=lambda r: r.index):
        right = False
        if row.index not in answers:
            missing.append(row.index)
        else:
            inference = infer_letter(answers[row.index], row.choices)
            rules[inference.rule] += 1
            if inference.rule == "unreadable":
                unreadable.append(row.index)
            elif inference.rule == "refusal":
                refused.append(row.index)
            right = inference.letter == row.answer
        question_right[row.group] = question_right.get(row.group, True) and right
        if row.group not in first_row:  # rows are in index order: the lowest index is the k = 0 copy
            first_row[row.group] = row
            first_right[row.group] = right
    categories = {group: row.category for group, row in first_row.items()}
    l2_categories = {group: row.l2_category for group, row in first_row.items()}
    return CircularResult(
        Tally(len(question_right), sum(question_right.values())),
        _tally(question_right, categories), _tally(question_right, l2_categories),
        Tally(len(first_right), sum(first_right.values())), rules, unreadable, refused, missing)
