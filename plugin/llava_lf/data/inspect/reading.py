"""Records in batches, read fast: large byte chunks split at record boundaries and parsed by orjson.

The converter's reader (`convert.reader.iter_records`) parses record by record; that is its right
(it reports every syntax error with its line) but costs half of inspect's time on mix665k. Here a JSON
array is cut after a record's closing brace where the separator learned from the first two records
occurs (`}`, the comma, the next record's `{` and first key: no string can hold it, since its quote is
not escaped), and orjson parses the whole cut as one array. A cut that does not parse (the pattern
inside a nested object) is retried at an earlier match. JSON Lines are parsed line by line. Anything
else (a syntax error, a lone surrogate or a huge integer orjson refuses, one record larger than
`MAX_BUFFER`, concatenated objects) hands over to the converter's reader from the first record not yet
given, so the records, and every error message, are the converter's own. Record lines are counted only
when asked for (the card shows a few, for its rejection examples).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from llava_lf.data.convert.reader import iter_records

CHUNK = 1 << 18  # bytes parsed at a time: about 140 mix665k records (3 MB of Python objects, still in the caches)
MAX_BUFFER = 64 << 20  # a record larger than this is read by the converter's reader
SLOW_BATCH = 2048
_TRIES = 4  # earlier matches tried when a cut does not parse (later ones, for a split point)
SPLIT_SEARCH = 64  # chunks looked through for a split point
_BOM = b"\xef\xbb\xbf"
# A record's closing brace, the separator, the next record's opening brace and first key.
_SEPARATOR = re.compile(rb'\}(\s*,\s*)\{\s*"[^"\\]*"\s*:')


class HandOver(Exception):
    """The fast path cannot go on: the converter's reader takes over (or a split scan is given up)."""


@dataclass(slots=True)
class Batch:
    start: int  # index of the first record
    values: list
    lines: list[int] | None = None  # each record's line, counted on demand for an array's chunk
    text: bytes = b""  # the chunk the records came from, starting at the first one
    first_line: int = 1

    def line(self, position: int) -> int:
        if self.lines is None:
            self.lines = _item_lines(self.text, self.first_line)
        return self.lines[position]


def _item_lines(text: bytes, first_line: int) -> list[int]:
    """The line of each item of a chunk of array items (parsed before, so it parses)."""
    decoded, decode = text.decode("utf-8"), json.JSONDecoder().raw_decode
    lines, pos, line = [], 0, first_line
    space = re.compile(r"[\s,]*")
    while True:
        start = space.match(decoded, pos).end()
        if start >= len(decoded):
            return lines
        line += decoded.count("\n", pos, start)
        lines.append(line)
        _, end = decode(decoded, start)
        line += decoded.count("\n", start, end)
        pos = end


def iter_batches(path: Path) -> Iterator[Batch]:
    """Every record of a LLaVA file (as `convert.reader.iter_records` reads it), in batches, in order."""
    given = 0
    try:
        for batch in _fast(path):
            yield batch
            given += len(batch.values)
        return
    except HandOver:
        pass
    values, lines, start = [], [], given
    for source in iter_records(path):
        if source.index < given:
            continue
        values.append(source.value)
        lines.append(source.line)
        if len(values) == SLOW_BATCH:
            yield Batch(start, values, lines)
            start += len(values)
            values, lines = [], []
    if values:
        yield Batch(start, values, lines)


def _fast(path: Path) -> Iterator[Batch]:
    with open(path, "rb") as handle:
        head = handle.read(CHUNK)
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        first = head.lstrip()[:1]
        if first == b"[":
            yield from _array(handle, head[head.index(b"[") + 1:], 1 + head.count(b"\n", 0, head.index(b"[")))
        elif first == b"{":
            yield from _lines(handle, head)
        else:  # empty or not JSON: the converter's reader says what is wrong
            raise HandOver


def file_kind(path: Path) -> str | None:
    """"array" or "lines" (by the first character), None otherwise."""
    with open(path, "rb") as handle:
        first = handle.read(4096).removeprefix(_BOM).lstrip()[:1]
    return {b"[": "array", b"{": "lines"}.get(first)


def split_point(path: Path, share: float) -> tuple[int, int] | None:
    """(end of one record, start of the next) near `share` of the file, or None where none is found.

    For a JSON array the boundary is the separator of its first two records (looked for from `share` on,
    through up to SPLIT_SEARCH chunks), which only a record's end or a nested object of the same shape can
    hold; a match after which the next chunk does not cut into whole records is passed over. One that
    still slips through makes a part fail to parse, and the caller then reads the file in one pass.
    """
    kind = file_kind(path)
    size = path.stat().st_size
    target = int(size * share)
    with open(path, "rb") as handle:
        if kind == "lines":
            handle.seek(target)
            at = handle.read(CHUNK).find(b"\n")
            return (target + at + 1, target + at + 1) if at >= 0 else None
        if kind != "array":
            return None
        head = handle.read(CHUNK).removeprefix(_BOM)
        try:
            separator = _learn_separator(head[head.index(b"[") + 1:].lstrip())
        except HandOver:
            return None
        # Records whose first key differs from the first record's hold no separator: look on, a chunk at a time.
        tries = 0
        for start in range(target, min(target + SPLIT_SEARCH * CHUNK, size), CHUNK):
            handle.seek(start)
            window = handle.read(CHUNK + len(separator))
            at = window.find(separator)
            while 0 <= at < CHUNK and tries < _TRIES:
                begin = start + at + separator.index(b"{")
                if _starts_records(handle, begin, separator):  # not a nested object of the same shape
                    return start + at + 1, begin
                tries += 1
                at = window.find(separator, at + 1)
    return None


def _starts_records(handle, begin: int, separator: bytes) -> bool:
    """Whether the chunk from `begin` cuts into whole records as the reader cuts it (`_cut`; when the chunk
    holds no separator, nothing tells: yes)."""
    handle.seek(begin)
    try:
        _cut(handle.read(CHUNK), separator)
    except HandOver:
        return False
    return True


def iter_part(path: Path, begin: int, end: int | None, start_index: int) -> Iterator[Batch]:
    """The records of bytes [begin, end) from `split_point`s (begin 0: the file's start; end None: its end).

    Lines are counted from the part's start (line 1). Raises `HandOver` when the part does not read
    as whole records; nothing is handed to the converter's reader here.
    """
    kind = file_kind(path)
    with open(path, "rb") as handle:
        handle.seek(begin)
        head = handle.read(min(CHUNK, end - begin) if end is not None else CHUNK)
        remaining = None if end is None else end - begin - len(head)
        if begin == 0:
            head = head.removeprefix(_BOM)
        if kind == "lines":
            batches = _lines(handle, head, remaining)
        elif kind == "array":
            opening = head.index(b"[") + 1 if begin == 0 else 0
            batches = _array(handle, head[opening:], 1 + head.count(b"\n", 0, opening), remaining)
        else:
            raise HandOver
        for batch in batches:
            batch.start += start_index
            yield batch


def _parse(chunk: bytes) -> list:
    try:
        return orjson.loads(b"[" + chunk + b"]")
    except orjson.JSONDecodeError:
        raise HandOver from None


def _read(handle, remaining: int | None) -> tuple[bytes, int | None]:
    """The next chunk, not past a part's end (`remaining` bytes; None: the file's end)."""
    if remaining is None:
        return handle.read(CHUNK), None
    more = handle.read(min(CHUNK, remaining))
    return more, remaining - len(more)


def _array(handle, buffer: bytes, line: int, remaining: int | None = None) -> Iterator[Batch]:
    """Items of a JSON array from just after its `[` (or a record's start); `remaining` set: the part ends
    after a record, not at `]`."""
    index, separator, eof, want = 0, None, False, CHUNK
    while True:
        if not eof and len(buffer) < want:
            more, remaining = _read(handle, remaining)
            eof = not more
            buffer += more
            continue
        stripped = buffer.lstrip()
        line += buffer.count(b"\n", 0, len(buffer) - len(stripped))
        buffer = stripped
        if eof:
            body = buffer.rstrip()
            if remaining is None:
                if not body.endswith(b"]") or not body[:-1].strip():  # truncated, or an empty array / trailing comma
                    raise HandOver
                body = body[:-1]
            values = _parse(body)
            yield Batch(index, values, text=body, first_line=line)
            return
        if separator is None:
            try:
                separator = _learn_separator(buffer)
            except HandOver:  # the first two records are not both in the buffer yet: read more
                want = len(buffer) + CHUNK
                if want > MAX_BUFFER:
                    raise
                continue
        cut = _cut(buffer, separator)
        if cut is None:
            want = len(buffer) + CHUNK
            if want > MAX_BUFFER:
                raise HandOver
            continue
        values, end, following = cut
        yield Batch(index, values, text=buffer[:end], first_line=line)
        index += len(values)
        line += buffer.count(b"\n", 0, following)
        buffer, want = buffer[following:], CHUNK


def _learn_separator(buffer: bytes) -> bytes:
    """The bytes between the first record's `}` and the second's first key (including it)."""
    try:
        text = buffer.decode("utf-8", "ignore")
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        raise HandOver from None
    end = len(text[:end].encode("utf-8"))
    match = _SEPARATOR.match(buffer, end - 1)
    if match is None:
        raise HandOver
    return match.group()


def _cut(buffer: bytes, separator: bytes) -> tuple[list, int, int] | None:
    """(records, end of the last, start of the next) for the last cut in `buffer` that parses."""
    limit = len(buffer)
    for _ in range(_TRIES):
        at = buffer.rfind(separator, 0, limit)
        if at <= 0:
            return None
        try:
            values = orjson.loads(b"[" + buffer[: at + 1] + b"]")
        except orjson.JSONDecodeError:
            limit = at
            continue
        return values, at + 1, at + separator.index(b"{")
    raise HandOver


def _lines(handle, buffer: bytes, remaining: int | None = None) -> Iterator[Batch]:
    index, line, eof = 0, 1, False
    loads, error = orjson.loads, orjson.JSONDecodeError
    while not eof:
        more, remaining = _read(handle, remaining)
        eof = not more
        buffer += more
        end = len(buffer) if eof else buffer.rfind(b"\n") + 1
        if end == 0:
            if len(buffer) > MAX_BUFFER:
                raise HandOver
            continue
        values, lines = [], []
        for number, text in enumerate(buffer[:end].split(b"\n"), line):
            if text.strip():
                try:
                    values.append(loads(text))
                except error:
                    raise HandOver from None
                lines.append(number)
        if index == 0 and values and type(values[0]) is dict and "conversations" not in values[0]:
            raise HandOver  # perhaps one object holding the records: the converter's reader explains
        line += buffer.count(b"\n", 0, end)
        buffer = buffer[end:]
        if values:
            yield Batch(index, values, lines)
            index += len(values)
