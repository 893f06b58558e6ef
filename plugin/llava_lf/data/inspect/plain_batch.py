"""Verdicts and figures for a whole batch of plain records at once, with C-level maps over its turns.

Most records of LLaVA's files are plain: an object (not a converted line) with a string or integer id or
none, one image path or none, and an even number of turns alternating human/gpt from the first, each with
text, the image's `<image>` in a human turn. For such records the converter accepts as it reads and
changes nothing that inspect counts, so its checks reduce to facts about the whole batch (every role in
place, every text non-blank and free of lone surrogates, one placeholder per image record, no id taken),
and the figures to counts over the batch's turns. `plain_batch` returns None as soon as one fact fails;
the caller then splits the batch or reads its records one by one (`verdict.ConverterChecks`,
`figures.record_figures`), which give the same verdicts and figures: a test holds the two to that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress, repeat
from operator import contains, eq, itemgetter, methodcaller

import numpy as np

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN
from llava_lf.data.convert.report import Problem
from llava_lf.data.convert.validate import surrogate_at

from .figures import is_non_latin, may_refuse, refusal_count, refuses
from .kinds import TYPES, TypeRule, record_source, record_type
from .seen import SeenHashes
from .verdict import ConverterChecks
from .words import words_per_text

_GET = dict.get
_FROM, _VALUE = itemgetter("from"), itemgetter("value")
_DROP_PLACEHOLDER = methodcaller("replace", IMAGE_PLACEHOLDER, "")
_COUNT_PLACEHOLDER = methodcaller("count", IMAGE_PLACEHOLDER)
_NONE = type(None)
_ID_TYPES = frozenset((str, int, _NONE))
_IMAGE_TYPES = frozenset((str, _NONE))


@dataclass
class PlainBatch:
    """What a batch of plain records adds to the card; per-record lists are in the batch's order."""

    ids: list[str | None]  # each record's id as the card names it (None: it has none)
    images: list[str | None]  # each record's image path as written
    files: list[str | None] | None  # each image path's absolute file (None: text-only); None: not checked
    pairs: list[int]
    words: list[int]
    types: list[str]
    type_how: Counter[str]
    sources: Counter[str]
    answer_words: dict[str, list[int]]  # by type
    questions: list[str]
    answers: list[str]
    keys: list[int]  # content hashes, for exact duplicates
    refusals: list[tuple[int, int, str]] = field(default_factory=list)  # (position, refusing answers, first one)
    non_latin: int = 0


@dataclass(slots=True)
class _Parts:
    """A batch's records taken apart, when each is an object with readable turns, a usable id and image."""

    ids: list[str | None]  # as the card names the records (an integer id as text)
    output_ids: list[str]  # the ids the converter writes the records under (`claim_output_id`)
    images: list[str | None]
    sizes: list[int]  # turns per record
    starts: list[int]  # each record's first turn in `roles` and `texts`
    roles: list[str]
    texts: list[str]
    joined: str  # the texts joined by NUL


def plain_batch(values: list, start: int, checks: ConverterChecks, rule: TypeRule) -> PlainBatch | None:
    """The batch's figures when every record is plain and the converter would accept it as it is (its ids
    are then claimed), else None with nothing claimed. `start` is the first record's index."""
    if checks.plain:  # the stage-1 shape check is read record by record
        return None
    parts = _parts(values, start)
    if parts is None or not _accepted(parts):
        return None
    files = _files(checks, parts.images)
    if files is False or not checks.claim_all(parts.output_ids):  # a duplicate id: the records say which
        return None
    return _figures(values, rule, parts, files)


def plain_seed(values: list, start: int, checks: ConverterChecks, contents: SeenHashes
               ) -> tuple[list[str], list[str]] | None:
    """What the duplicate checks remember of a batch (its ids in `checks`, its contents in `contents`: what
    `ConverterChecks.claim` and `figures.record_figures(...).key` give for every record, accepted or not) and its
    questions and answers (as `figures.record_figures` reads them), for a scan that starts after it; None
    with nothing remembered when a record is not plain enough to take apart."""
    parts = _parts(values, start)
    if parts is None or not checks.claim_all(parts.output_ids):
        return None
    contents.add_each(_keys(parts))
    roles, texts = parts.roles, parts.texts
    questions = list(map(str.strip, map(_DROP_PLACEHOLDER, compress(texts, map(eq, roles, repeat(ROLE_HUMAN))))))
    return questions, list(compress(texts, map(eq, roles, repeat(ROLE_GPT))))


def _parts(values: list, start: int) -> _Parts | None:
    if set(map(type, values)) != {dict} or any(map(contains, values, repeat("images"))):
        return None  # other values and converted lines are read one by one
    conversations = list(map(_GET, values, repeat("conversations")))
    if set(map(type, conversations)) != {list}:
        return None
    turns = list(chain.from_iterable(conversations))
    try:
        roles, texts = list(map(_FROM, turns)), list(map(_VALUE, turns))
        joined = "\0".join(texts)  # and a TypeError when a text is not a string
        "".join(roles)
    except (TypeError, KeyError):
        return None
    ids = list(map(_GET, values, repeat("id")))
    images = list(map(_GET, values, repeat("image")))
    if not _ID_TYPES.issuperset(map(type, ids)) or not _IMAGE_TYPES.issuperset(map(type, images)):
        return None
    paths = list(filter(None, images))
    if len(paths) != len(images) - images.count(None) or any(map(str.isspace, paths)):
        return None  # an empty path is malformed
    joined_paths = "\0".join(paths)
    if joined_paths.count("\0") != max(len(paths) - 1, 0) or surrogate_at(joined_paths) is not None:
        return None
    text_ids = [rid for rid in ids if type(rid) is str]
    if surrogate_at("".join(text_ids)) is not None:
        return None
    names = ids if len(text_ids) == len(ids) else [rid if rid is None else str(rid) for rid in ids]
    output_ids = [str(start + position) if rid is None else rid for position, rid in enumerate(names)]
    sizes = list(map(len, conversations))
    return _Parts(names, output_ids, images, sizes, list(accumulate(sizes, initial=0))[:-1], roles, texts, joined)


def _accepted(parts: _Parts) -> bool:
    """Whether the converter takes every record as it is: human/gpt pairs, text in every turn, one `<image>`
    per image in its human turns."""
    sizes, roles, texts = parts.sizes, parts.roles, parts.texts
    if min(sizes) < 2 or any(size & 1 for size in sizes):
        return False
    human_roles, gpt_roles = roles[0::2], roles[1::2]  # each record has an even number of turns
    if human_roles.count(ROLE_HUMAN) != len(human_roles) or gpt_roles.count(ROLE_GPT) != len(gpt_roles):
        return False
    if "" in texts or any(map(str.isspace, texts)) or surrogate_at(parts.joined) is not None:
        return False  # a blank turn, or a lone surrogate
    images = parts.images
    with_image = len(images) - images.count(None)
    # Each image record holding `<image>` in its first turn, and no more of them in the batch than image
    # records, means one per image record and none elsewhere (the usual case, read with two scans).
    firsts = [texts[first] for first, image in zip(parts.starts, images) if image is not None]
    if parts.joined.count(IMAGE_PLACEHOLDER) == with_image and all(map(contains, firsts, repeat(IMAGE_PLACEHOLDER))):
        return True
    human = texts[0::2]
    if IMAGE_PLACEHOLDER in "\0".join(texts[1::2]):
        return False
    owner = np.repeat(np.arange(len(sizes)), [size >> 1 for size in sizes])  # the record of each human turn
    placeholders = np.bincount(owner, weights=list(map(_COUNT_PLACEHOLDER, human)), minlength=len(sizes))
    return np.array_equal(placeholders, [image is not None for image in images])


def _files(checks: ConverterChecks, images: list[str | None]) -> list[str | None] | None | bool:
    """Each image's file (None for a text-only record), None when paths are not checked, False when the
    converter would refuse one."""
    if not checks.checks_paths:
        return None
    files: list[str | None] = []
    problems: list[Problem] = []
    for image in images:
        files.append(None if image is None else checks.source_file(image, "image", problems))
        if problems:
            return False
    return files


def _figures(values: list, rule: TypeRule, parts: _Parts, files: list[str | None] | None) -> PlainBatch:
    ids, images, sizes, texts = parts.ids, parts.images, parts.sizes, parts.texts
    pairs = [size >> 1 for size in sizes]
    human, answers = texts[0::2], texts[1::2]
    questions = list(map(str.strip, map(_DROP_PLACEHOLDER, human)))
    turn_words = words_per_text(texts, IMAGE_PLACEHOLDER)  # a placeholder is no word
    answer_words = turn_words[1::2].tolist()
    words = np.add.reduceat(turn_words, parts.starts).tolist()
    firsts = [start >> 1 for start in parts.starts]  # each record's first pair
    types, type_how = _types(values, rule, pairs, [questions[first] for first in firsts], ids)
    by_type: dict[str, list[int]] = {}
    if len(set(types)) == 1:
        by_type[types[0]] = answer_words
    else:
        pair_types = np.repeat(np.array(types, dtype=object), pairs)
        for kind in set(types):
            by_type[kind] = np.asarray(answer_words)[pair_types == kind].tolist()
    batch = PlainBatch(ids, images, files, pairs, words, types, type_how, _sources(values, images), by_type,
                       questions, answers, _keys(parts))
    lowered = "\0".join(answers).lower()
    if may_refuse(lowered):
        for position, (first, n) in enumerate(zip(firsts, pairs)):
            own = answers[first:first + n]
            if refused := refusal_count(own):
                batch.refusals.append((position, refused, next(a for a in own if refuses(a))))
    if not parts.joined.isascii():
        batch.non_latin = sum(is_non_latin("\n".join(texts[start:start + size]))
                              for start, size in zip(parts.starts, sizes))
    return batch


def _types(values: list, rule: TypeRule, pairs: list[int], first_questions: list[str],
           ids: list[str | None]) -> tuple[list[str], Counter[str]]:
    """Each record's type and how each was told (`kinds.record_type`), at once when the file decides."""
    uniform = rule.file_type is not None or not rule.by_shape
    suffixed = any(rid is not None and rid.endswith(TYPES) for rid in ids)
    if uniform and not suffixed and not any(map(contains, values, repeat("type"))):
        kind, how = (rule.file_type, "file name") if rule.file_type is not None else ("unknown", "none")
        return [kind] * len(values), Counter({how: len(values)})
    told = list(map(record_type, values, pairs, first_questions, repeat(rule)))
    return [kind for kind, _ in told], Counter(how for _, how in told)


def _sources(values: list, images: list[str | None]) -> Counter[str]:
    return Counter(map(record_source, values, [[] if image is None else [image] for image in images]))


def _keys(parts: _Parts) -> list[int]:
    """`figures.content_hash` of each record, with no Python code per record."""
    images = [() if image is None else (image,) for image in parts.images]
    spans = list(map(slice, parts.starts, accumulate(parts.sizes)))
    roles = map(tuple, map(parts.roles.__getitem__, spans))
    texts = map(tuple, map(parts.texts.__getitem__, spans))
    return list(map(hash, zip(images, roles, texts)))
