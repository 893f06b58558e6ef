"""What one record contributes to the card (source, type, turns, words, texts), read from the record as written:
before the converter's repairs, so a record it would reject still counts in the composition and lengths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import compress, repeat
from operator import contains, itemgetter, methodcaller

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN

from .kinds import TypeRule, record_source, record_type

_FROM, _VALUE = itemgetter("from"), itemgetter("value")
_DROP_PLACEHOLDER = methodcaller("replace", IMAGE_PLACEHOLDER, "")
_PAIRS = [ROLE_HUMAN, ROLE_GPT] * 64  # roles of a record of alternating pairs (a longer one takes the slow way)
PUNCTUATION = ".,;:!?\"'()[]{}*-"  # trimmed from the first words of questions (the paper's verb/noun view)
_SPACE = "".join(f"\\x{{{code:x}}}" for code in range(0x3001) if chr(code).isspace())  # str.isspace's, for RE2
# Answers that decline instead of answering, as chat teachers write them.
_REFUSAL = re.compile(r"i'?m sorry|i am sorry|i’m sorry|as an ai\b|as a language model|i cannot (?:help|assist)"
                      r"|i can'?t (?:help|assist)|i’m unable|i'?m unable to (?:see|view)", re.IGNORECASE)
NON_LATIN_SHARE = 0.3  # a record with more of its characters outside ASCII counts as non-Latin script


@dataclass(slots=True)
class RecordFigures:
    source: str
    type: str
    told_by: str  # how the type was told (`kinds.record_type`)
    pairs: int  # human turns (questions)
    words: int  # `<image>` read as a space
    questions: list[str]  # without '<image>', stripped
    answers: list[str]
    answer_words: list[int]
    content: int  # a hash of the images and turns (not the id): exact duplicates share it
    refusals: int  # answers that decline
    first_refusal: str | None
    empty_answers: int
    non_latin: bool


def opening_sql(column: str) -> str:
    """A question's first two words, as DuckDB finds them on insert (the card's query lower-cases and trims
    them): the runs `str.split` would cut, between the characters `str.isspace` calls spaces (RE2's \\s knows
    only the ASCII ones)."""
    return f"regexp_extract({column}, '^[^{_SPACE}]*(?:[{_SPACE}]+[^{_SPACE}]+)?')"


def is_non_latin(text: str) -> bool:
    """More than NON_LATIN_SHARE of the characters outside ASCII."""
    if text.isascii():
        return False
    return len(text) - len(text.encode("ascii", "ignore")) > NON_LATIN_SHARE * len(text)


def record_figures(record: object, images: list[str], rule: TypeRule) -> RecordFigures | None:
    """The figures of one record, or None when it has no readable turns (the verdict says why)."""
    if type(record) is not dict or type(turns := record.get("conversations")) is not list:
        return None
    try:  # C-level maps: this runs for each of a file's hundreds of thousands of records
        roles, values = list(map(_FROM, turns)), list(map(_VALUE, turns))
        text = "\n".join(values)
    except (TypeError, KeyError):  # a turn that is no object, lacks a key, or has no text
        return None
    try:
        "".join(roles)
    except TypeError:  # a role that is a number or a list: never a known role; its repr stands for it
        roles = [role if type(role) is str else repr(role) for role in roles]
    counts = list(map(len, map(str.split, values)))
    if roles == _PAIRS[:len(roles)]:  # human/gpt pairs: most records
        asked, answers, answer_words = values[0::2], values[1::2], counts[1::2]
    else:
        asked = [value for role, value in zip(roles, values) if role == ROLE_HUMAN]
        answers = [value for role, value in zip(roles, values) if role == ROLE_GPT]
        answer_words = [n for role, n in zip(roles, counts) if role == ROLE_GPT]
    words = sum(counts)
    if IMAGE_PLACEHOLDER in text:  # '<image>' is no word, and splits a word it is glued to: count those again
        asked = list(map(_DROP_PLACEHOLDER, asked))
        for position in compress(range(len(values)), map(contains, values, repeat(IMAGE_PLACEHOLDER))):
            words += len(values[position].replace(IMAGE_PLACEHOLDER, " ").split()) - counts[position]
    questions = list(map(str.strip, asked))
    refused = [answer for answer in answers if _REFUSAL.search(answer)] if _may_refuse(answers) else []
    kind, told_by = record_type(record, len(questions), questions[0] if questions else "", rule)
    return RecordFigures(
        record_source(record, images), kind, told_by, len(questions), words, questions, answers, answer_words,
        hash((tuple(images), tuple(roles), tuple(values))), len(refused), refused[0][:200] if refused else None,
        answer_words.count(0), is_non_latin(text))


def _may_refuse(answers: list[str]) -> bool:
    """False when no answer can decline (one lower-cased scan of them all): most records."""
    lowered = "\0".join(answers).lower()
    # Each refusal holds one of these, lower-cased: a cheap first look.
    return ("sorry" in lowered or "as a" in lowered or "i can" in lowered or "unable" in lowered) and \
        _REFUSAL.search(lowered) is not None
