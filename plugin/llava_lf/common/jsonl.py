"""JSON Lines: `read_json_rows` for benchmark files, and `JsonlAppender`, an append-only log that a kill leaves
readable (at most one torn last row, cut off on reopen) and a lock keeps to one writer (docs/generate.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Self

from filelock import FileLock, Timeout

from llava_lf.errors import LlavaLfError


def read_json_rows(path: Path, error: type[Exception], allow_array: bool = False) -> list[dict]:
    """The rows of `path`; `allow_array` also takes a JSON array. A line that is not JSON raises `error`."""
    text = path.read_text(encoding="utf-8")
    if allow_array and text.lstrip().startswith("["):
        return json.loads(text)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as problem:
                raise error(f"{path}, line {number}: not JSON ({problem})") from None
    return rows


def _parse_row(line: bytes) -> dict | None:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


class JsonlAppender:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []  # what the file held when opened, torn tail excluded
        self.dropped_tail = b""
        self._fd: int | None = None
        self._lock = FileLock(path.with_name(path.name + ".lock"), timeout=0)

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise LlavaLfError(f"{self.path} is being written by another run; wait for it or choose another "
                              "--out") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                self._recover(fd)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self._lock.release()
            raise
        self._fd = fd
        return self

    def _recover(self, fd: int) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty unless the last write was torn
        if lines and tail == b"" and _parse_row(lines[-1]) is None and lines[-1].strip():
            tail = lines.pop() + b"\n"  # a damaged final line (garbage after a crash) counts as torn too
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = _parse_row(line)
            if row is None:
                raise LlavaLfError(f"{self.path}:{number}: not a JSON object, and not the last line, so not a torn "
                                  "write; the file was changed by something else: fix or delete that line")
            self.rows.append(row)
        kept = len(data) - len(tail)
        if tail.strip():
            row = _parse_row(tail)
            if row is not None and not tail.endswith(b"\n"):
                self.rows.append(row)
                os.write(fd, b"\n")
                return
            self.dropped_tail = tail
        if kept < len(data):
            os.ftruncate(fd, kept)

    def append(self, row: dict) -> None:
        if self._fd is None:
            raise LlavaLfError(f"{self.path} is not open; use JsonlAppender as a context manager")
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._lock.release()
