"""What one record contributes to the card: its source, type, turns, words, questions and answers.

Figures are read from the record as written (before the converter's repairs), so a record the converter
would reject still counts in the composition and lengths; the converter's verdict is taken separately.
Runs once per record of 665K-record files: string methods on joined text, no per-character Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN

from .kinds import TypeRule, record_source, record_type

_PUNCTUATION = ".,;:!?\"'()[]{}*-"
# Answers that decline instead of answering, as chat teachers write them.
_REFUSAL = re.compile(r"i'?m sorry|i am sorry|i’m sorry|as an ai\b|as a language model|i cannot (?:help|assist)"
                      r"|i can'?t (?:help|assist)|i’m unable|i'?m unable to (?:see|view)", re.IGNORECASE)
_REFUSAL_HINTS = ("sorry", "as a", "i can", "unable")  # each refusal holds one, lower-cased: a cheap first look
_STR = {str}
NON_LATIN_SHARE = 0.3  # a record with more of its characters outside ASCII counts as non-Latin script


@dataclass(slots=True)
class RecordFigures:
    source: str
    type: str
    type_how: str  # how the type was told (see kinds.record_type)
    images: list[str]
    pairs: int  # human turns (questions)
    words: int
    questions: list[str]  # without '<image>', stripped
    answers: list[str]
    answer_words: list[int]  # words per answer
    key: int  # the hash of the record's content (images and turns), for exact duplicates
    refusals: int
    empty_answers: int
    non_latin: bool


def refuses(answer: str) -> bool:
    return _REFUSAL.search(answer) is not None


PUNCTUATION = _PUNCTUATION  # trimmed from the first words of questions (the paper's verb/noun view)


def _roles_values(record: object) -> tuple[list[str], list[str]] | None:
    """The record's roles (a role that is not a string as its repr) and turn texts, or None when it has no
    readable turns."""
    if type(record) is not dict or type(turns := record.get("conversations")) is not list:
        return None
    try:
        roles = [turn["from"] for turn in turns]
        values = [turn["value"] for turn in turns]
    except (TypeError, KeyError):
        return None
    if values and set(map(type, values)) != _STR:
        return None
    if roles and set(map(type, roles)) != _STR:  # e.g. a number or a list: hashable and never a known role
        roles = [role if type(role) is str else repr(role) for role in roles]
    return roles, values


def content_hash(images: tuple[str, ...], roles: tuple, values: tuple[str, ...]) -> int:
    """What two records must share to be exact duplicates: their images and turns (not their ids)."""
    return hash((images, roles, values))


def may_refuse(lowered: str) -> bool:
    """False when no answer in `lowered` (answers joined and lower-cased) can decline: a cheap first look."""
    return any(hint in lowered for hint in _REFUSAL_HINTS)


def refusal_count(answers: list[str]) -> int:
    """How many of a record's answers decline instead of answering."""
    lowered = "\0".join(answers).lower()
    if may_refuse(lowered) and _REFUSAL.search(lowered):
        return sum(map(refuses, answers))
    return 0


def is_non_latin(text: str) -> bool:
    """More than NON_LATIN_SHARE of the characters outside ASCII."""
    if text.isascii():
        return False
    outside = len(text) - len(text.encode("ascii", "ignore"))
    return outside > NON_LATIN_SHARE * len(text)


def record_figures(record: object, images: list[str], rule: TypeRule) -> RecordFigures | None:
    """The figures of one record, or None when it has no readable turns (the converter's verdict says why)."""
    split = _roles_values(record)
    if split is None:
        return None
    roles, values = split
    questions = [value.replace(IMAGE_PLACEHOLDER, "").strip() for role, value in zip(roles, values)
                 if role == ROLE_HUMAN]
    answers = [value for role, value in zip(roles, values) if role == ROLE_GPT]
    text = "\n".join(values)
    # Words of the joined text, counted per turn (the join adds only whitespace), '<image>' read as a space.
    counts = list(map(len, map(str.split, values)))
    words = sum(counts)
    if IMAGE_PLACEHOLDER in text:
        for position, value in enumerate(values):
            if IMAGE_PLACEHOLDER in value:
                words += len(value.replace(IMAGE_PLACEHOLDER, " ").split()) - counts[position]
    refusals = refusal_count(answers)
    answer_words = [n for role, n in zip(roles, counts) if role == ROLE_GPT]
    first = questions[0] if questions else ""
    kind, how = record_type(record, len(questions), first, rule)
    return RecordFigures(
        source=record_source(record, images),
        type=kind, type_how=how,
        images=images, pairs=len(questions), words=words,
        questions=questions, answers=answers,
        answer_words=answer_words,
        key=content_hash(tuple(images), tuple(roles), tuple(values)), refusals=refusals,
        empty_answers=answer_words.count(0), non_latin=is_non_latin(text))  # no words: empty or only whitespace
