"""What one record contributes to the card (source, type, turns, words, texts), read from the record as written.

The figures come before the converter's repairs, so a record it would reject still counts in the composition
and lengths; its verdict is taken separately (`verdict`). The card's queries aggregate these rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from operator import itemgetter

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN

from .kinds import TypeRule, record_source, record_type

KEY_CHARS = 256  # texts are compared on their first characters: a ShareGPT answer runs to kilobytes
_KEY = itemgetter(slice(0, KEY_CHARS))
PUNCTUATION = ".,;:!?\"'()[]{}*-"  # trimmed from the first words of questions (the paper's verb/noun view)
# Answers that decline instead of answering, as chat teachers write them.
_REFUSAL = re.compile(r"i'?m sorry|i am sorry|i’m sorry|as an ai\b|as a language model|i cannot (?:help|assist)"
                      r"|i can'?t (?:help|assist)|i’m unable|i'?m unable to (?:see|view)", re.IGNORECASE)
NON_LATIN_SHARE = 0.3  # a record with more of its characters outside ASCII counts as non-Latin script
_STR = {str}


@dataclass(slots=True)
class RecordFigures:
    source: str
    type: str
    told_by: str  # how the type was told (`kinds.record_type`)
    pairs: int  # human turns (questions)
    words: int  # `<image>` read as a space
    questions: list[str]  # without '<image>', stripped, cut to KEY_CHARS
    answers: list[str]  # cut to KEY_CHARS
    answer_words: list[int]
    content: int  # a hash of the images and turns (not the id): exact duplicates share it
    refusals: int  # answers that decline
    first_refusal: str | None
    empty_answers: int
    non_latin: bool


def refuses(answer: str) -> bool:
    return _REFUSAL.search(answer) is not None


def is_non_latin(text: str) -> bool:
    """More than NON_LATIN_SHARE of the characters outside ASCII."""
    if text.isascii():
        return False
    return len(text) - len(text.encode("ascii", "ignore")) > NON_LATIN_SHARE * len(text)


def _roles_values(record: object) -> tuple[list[str], list[str]] | None:
    """The roles (one that is not a string as its repr) and texts of the turns; None when they cannot be read."""
    if type(record) is not dict or type(turns := record.get("conversations")) is not list:
        return None
    try:
        roles = [turn["from"] for turn in turns]
        values = [turn["value"] for turn in turns]
    except (TypeError, KeyError):
        return None
    if values and set(map(type, values)) != _STR:
        return None
    if roles and set(map(type, roles)) != _STR:  # e.g. a number or a list: never a known role
        roles = [role if type(role) is str else repr(role) for role in roles]
    return roles, values


def record_figures(record: object, images: list[str], rule: TypeRule) -> RecordFigures | None:
    """The figures of one record, or None when it has no readable turns (the verdict says why)."""
    split = _roles_values(record)
    if split is None:
        return None
    roles, values = split
    counts = list(map(len, map(str.split, values)))
    text = "\n".join(values)
    if roles[0::2].count(ROLE_HUMAN) == len(values) + 1 >> 1 and roles[1::2].count(ROLE_GPT) == len(values) >> 1:
        asked, answers, answer_words = values[0::2], values[1::2], counts[1::2]  # human/gpt pairs: most records
    else:
        asked = [value for role, value in zip(roles, values) if role == ROLE_HUMAN]
        answers = [value for role, value in zip(roles, values) if role == ROLE_GPT]
        answer_words = [n for role, n in zip(roles, counts) if role == ROLE_GPT]
    words = sum(counts)
    if IMAGE_PLACEHOLDER in text:  # '<image>' is no word, and splits a word it is glued to: count again
        asked = [value.replace(IMAGE_PLACEHOLDER, "") for value in asked]
        for position, value in enumerate(values):
            if IMAGE_PLACEHOLDER in value:
                words += len(value.replace(IMAGE_PLACEHOLDER, " ").split()) - counts[position]
    questions = list(map(str.strip, asked))
    refused = [answer for answer in answers if refuses(answer)] if _may_refuse(answers) else []
    kind, told_by = record_type(record, len(questions), questions[0] if questions else "", rule)
    return RecordFigures(
        record_source(record, images), kind, told_by, len(questions), words, list(map(_KEY, questions)),
        list(map(_KEY, answers)), answer_words, hash((tuple(images), tuple(roles), tuple(values))), len(refused),
        refused[0][:200] if refused else None, answer_words.count(0), is_non_latin(text))


def _may_refuse(answers: list[str]) -> bool:
    """False when no answer can decline (one lower-cased scan of them all): most records."""
    lowered = "\0".join(answers).lower()
    # Each refusal holds one of these, lower-cased: a cheap first look.
    return ("sorry" in lowered or "as a" in lowered or "i can" in lowered or "unable" in lowered) and \
        _REFUSAL.search(lowered) is not None
