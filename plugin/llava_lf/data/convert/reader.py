"""Stream the records of a LLaVA file (a JSON array, JSON Lines, or concatenated objects) in bounded memory.

The text is decoded a chunk at a time and each record is parsed with the C JSON scanner where it lies in
the buffer, so memory holds about two chunks plus the largest record, whatever the file size. A syntax
error raises `LlavaLfError` with the line and column, the way a person would look it up.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

CHUNK_CHARS = 1 << 20
# A parse failure this close to the end of the buffer may be a record cut by the chunk boundary
# (`tru`, `\u12`, `12.`): read more before calling it an error.
_BOUNDARY_MARGIN = 64
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def format_error(path: Path, line: int, column: int, message: str) -> LlavaLfError:
    """The file is not a JSON array of records nor JSON Lines: where, what was expected, and the fix."""
    return LlavaLfError(f"{path}: line {line}, column {column}: {message}\n  the file must be a JSON array of "
                        "records or JSON Lines; fix it at that line and column and run again (no earlier output "
                        "was changed)")


@dataclass(frozen=True)
class SourceRecord:
    index: int  # position in the file, from 0
    line: int | None  # the line where the record starts, from 1 (None: not from a text file)
    value: object  # parsed JSON, not yet validated
    at: str | None = None  # where a parquet row lies ("train-00001.parquet row 17")


class _Buffer:
    """Decoded text with a read position, refilled from the file, that knows line numbers."""

    def __init__(self, handle, path: Path):
        self._handle, self._path = handle, path
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text, self.pos, self.eof = "", 0, False
        self.bytes_read = 0
        self._lines_before = 0  # newlines in text already dropped from the buffer
        self._column_before = 0  # characters after the last dropped newline
        self._cursor, self._cursor_line = 0, 1  # a known (offset, line) pair, so counting stays incremental

    def fill(self, size: int = CHUNK_CHARS) -> bool:
        """Drop the consumed text and append about `size` more bytes; False at the end of the file."""
        if self.eof:
            return False
        raw = self._handle.read(size)
        self.bytes_read += len(raw)
        try:
            new = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as error:
            line, column = self.where(len(self.text))
            raise format_error(self._path, line, column, f"the file is not UTF-8 text ({error.reason})") from None
        self._drop_consumed()
        self.text += new
        self.eof = not raw
        return True

    def _drop_consumed(self) -> None:
        consumed = self.text[: self.pos]
        newlines = consumed.count("\n")
        if newlines:
            self._lines_before += newlines
            self._column_before = len(consumed) - consumed.rfind("\n") - 1
        else:
            self._column_before += len(consumed)
        self._cursor_line = self.line_at(self.pos)
        self.text, self.pos, self._cursor = self.text[self.pos:], 0, 0

    def line_at(self, offset: int) -> int:
        """Line of a buffer offset at or after the previous one asked for (records come in order)."""
        if offset < self._cursor:
            return self.where(offset)[0]
        self._cursor_line += self.text.count("\n", self._cursor, offset)
        self._cursor = offset
        return self._cursor_line

    def where(self, offset: int) -> tuple[int, int]:
        """(line, column) of a buffer offset, both from 1."""
        line = self._lines_before + self.text.count("\n", 0, offset) + 1
        last = self.text.rfind("\n", 0, offset)
        column = offset - last if last >= 0 else self._column_before + offset + 1
        return line, column

    def skip_whitespace(self) -> str:
        """Move past whitespace and return the next character, or '' at the end of the file."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def error(self, message: str, offset: int | None = None) -> LlavaLfError:
        line, column = self.where(self.pos if offset is None else offset)
        return format_error(self._path, line, column, message)


_decode = json.JSONDecoder().raw_decode


class OversizedNumber(str):
    """An integer literal longer than Python converts (`sys.get_int_max_str_digits()`), kept as its digits."""


def _int_or_oversized(digits: str) -> int | OversizedNumber:
    try:
        return int(digits)
    except ValueError:
        return OversizedNumber(digits)


# Used only after the fast decoder refused a record for an oversized integer: a Python call per integer.
_decode_oversized = json.JSONDecoder(parse_int=_int_or_oversized).raw_decode


@dataclass(frozen=True)
class Unparsable:
    """A record the JSON parser cannot build (nested deeper than its recursion limit), kept as its text."""

    message: str
    text: str


# A whole string (escapes included), a bracket, or a string's opening quote whose end is not read yet.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"')


def _skip_nested(buffer: _Buffer) -> Unparsable:
    """Move past the array/object at the read position without building it (it is too deep to parse)."""
    start_line, start_column = buffer.where(buffer.pos)
    depth, offset = 0, 0  # offset: from buffer.pos, which a refill moves
    while True:
        match = _STRUCTURE.search(buffer.text, buffer.pos + offset)
        if match is None or match.group() == '"':
            if not buffer.fill(max(CHUNK_CHARS, len(buffer.text) - buffer.pos)):
                raise buffer.error("the file ends inside a record nested too deeply to parse; is it truncated?")
            continue
        token = match.group()
        offset = match.end() - buffer.pos
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                text = buffer.text[buffer.pos:match.end()]
                buffer.pos = match.end()
                return Unparsable(f"nested deeper than the JSON parser's limit (record from line {start_line}, "
                                  f"column {start_column}, {len(text):,} characters)", text)


def _parse_value(buffer: _Buffer) -> object:
    """Parse the JSON value at the read position, reading more of the file when the value is cut.

    A record too deep to parse, or with an integer too long to convert, is returned as `Unparsable` /
    with `OversizedNumber` in place, so the validator rejects that record alone.
    """
    decode = _decode
    while True:
        # A record longer than a chunk is re-parsed after each read: double the read to keep that linear.
        more = max(CHUNK_CHARS, len(buffer.text) - buffer.pos)
        try:
            value, end = decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as error:
            cut = error.msg.startswith("Unterminated string") or error.pos >= len(buffer.text) - _BOUNDARY_MARGIN
            if cut and buffer.fill(more):
                continue
            if error.msg.startswith("Unterminated string") or error.pos >= len(buffer.text.rstrip()):
                raise buffer.error(f"the file ends inside a record ({error.msg}); is it truncated?", error.pos) from None
            raise buffer.error(f"not valid JSON: {error.msg}", error.pos) from None
        except RecursionError:
            return _skip_nested(buffer)
        except ValueError:  # an integer literal over Python's digit limit (the only other error the decoder raises)
            if decode is _decode_oversized:
                raise
            decode = _decode_oversized
            continue
        if end == len(buffer.text) and buffer.fill(more):  # a number may go on in the next chunk
            continue
        buffer.pos = end
        return value


def iter_records(path: Path) -> Iterator[SourceRecord]:
    """Yield every top-level record of a JSON array, or of JSON Lines / concatenated objects."""
    with open(path, "rb") as handle:
        yield from _records(_Buffer(handle, path))


def iter_records_with_progress(path: Path, progress) -> Iterator[SourceRecord]:
    """As `iter_records`, advancing a byte-counting progress bar (tqdm) as the file is read."""
    with open(path, "rb") as handle:
        buffer = _Buffer(handle, path)
        shown = 0
        for record in _records(buffer):
            if buffer.bytes_read != shown:
                progress.update(buffer.bytes_read - shown)
                shown = buffer.bytes_read
            yield record


def _records(buffer: _Buffer) -> Iterator[SourceRecord]:
    first = buffer.skip_whitespace()
    if first == "":
        raise buffer.error("the file is empty; expected a JSON array of records or JSON Lines")
    if first == "[":
        buffer.pos += 1
        yield from _array_items(buffer)
    elif first == "{":
        yield from _concatenated(buffer)
    else:
        raise buffer.error(f"expected '[' (a JSON array of records) or '{{' (JSON Lines), found {first!r}")


def _array_items(buffer: _Buffer) -> Iterator[SourceRecord]:
    if buffer.skip_whitespace() == "]":
        buffer.pos += 1
    else:
        index = 0
        while True:
            if buffer.skip_whitespace() == "":
                raise buffer.error(f"the file ends inside the array, after record {index}; is it truncated?")
            line = buffer.line_at(buffer.pos)
            yield SourceRecord(index, line, _parse_value(buffer))
            index += 1
            separator = buffer.skip_whitespace()
            buffer.pos += 1
            if separator == "]":
                break
            if separator != ",":
                buffer.pos -= 1
                found = repr(separator) if separator else "the end of the file"
                raise buffer.error(f"expected ',' or ']' after record {index - 1}, found {found}")
            if buffer.skip_whitespace() == "]":
                raise buffer.error(f"a comma after the last record ({index - 1}); JSON allows none before ']'")
    trailing = buffer.skip_whitespace()
    if trailing:
        raise buffer.error(f"unexpected {trailing!r} after the closing ']' of the array")


def _concatenated(buffer: _Buffer) -> Iterator[SourceRecord]:
    line = buffer.line_at(buffer.pos)
    first = _parse_value(buffer)
    if type(first) is dict and "conversations" not in first and buffer.skip_whitespace() == "":
        keys = ", ".join(repr(key) for key in list(first)[:5]) or "none"
        raise format_error(buffer._path, line, 1, f"the file is one JSON object (keys: {keys:.200}), not "
                                "records: expected a JSON array of records or JSON Lines (one record per line); "
                                "if the records sit under one key, write that list out as the file")
    yield SourceRecord(0, line, first)
    index = 1
    while buffer.skip_whitespace():
        line = buffer.line_at(buffer.pos)
        yield SourceRecord(index, line, _parse_value(buffer))
        index += 1
