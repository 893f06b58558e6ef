"""Atomic output: the dataset, its rejection report, and the `dataset_info.json` entry.

Each file is written beside its target under a temporary name and renamed over it only when complete,
so an interrupted run leaves the previous output as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from llava_lf.errors import LlavaLfError

from .records import SharegptRecord


class AtomicFile:
    """A binary file that replaces `path` on `commit()` and vanishes on `discard()`."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        # Open across many writes, closed by commit()/discard(); "x" creates it with the umask's mode.
        self.handle = open(self._tmp, "xb", buffering=1 << 20)  # noqa: SIM115

    def write_json_line(self, row: object) -> None:
        self.handle.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))

    def commit(self) -> None:
        self.handle.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self._tmp.unlink(missing_ok=True)


class DatasetWriter:
    """Writes sharegpt JSONL with the first image record first.

    The host loads JSONL with `datasets`, which fixes each column's type from the first block (about
    10 MB): if that block holds only text-only records, `images` becomes a list of nulls and the first
    image record later fails with "Couldn't cast array of type string to null". Text-only records that
    come before the first image record are held in a spill file and follow it.
    """

    def __init__(self, path: Path):
        self.file = AtomicFile(path)
        self._spill = None  # text-only records held back, on disk
        self._seen_image = False
        self.reordered = False

    def write(self, record: SharegptRecord) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        if self._seen_image:
            self.file.handle.write(line)
        elif record["images"]:
            self._seen_image = True
            self.file.handle.write(line)
            self._release_spill()
            self.reordered = self.reordered or self._spill is not None
        else:
            if self._spill is None:
                self._spill = tempfile.TemporaryFile("w+b", dir=self.file.path.parent)  # noqa: SIM115 (closed on release)
            self._spill.write(line)

    def _release_spill(self) -> None:
        if self._spill is not None:
            self._spill.seek(0)
            shutil.copyfileobj(self._spill, self.file.handle, 1 << 20)
            self._spill.close()

    def commit(self) -> None:
        if not self._seen_image:
            self._release_spill()
        self.file.commit()

    def discard(self) -> None:
        if self._spill is not None and not self._spill.closed:
            self._spill.close()
        self.file.discard()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise read-modify-write in one folder between processes (two conversions into one dataset_dir)."""
    descriptor = os.open(folder, os.O_RDONLY)  # locking the folder itself leaves no lock file behind
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def update_dataset_info(out_dir: Path, name: str, entry: dict) -> None:
    """Add or replace one entry of `out_dir/dataset_info.json`, leaving the others as they were."""
    info_path = Path(out_dir) / "dataset_info.json"
    with _locked(info_path.parent):
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        if not isinstance(info, dict):
            raise LlavaLfError(f"{info_path} is not a JSON object of dataset entries; fix or remove it")
        info[name] = entry
        target = AtomicFile(info_path)
        try:
            target.handle.write((json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        except BaseException:
            target.discard()
            raise
        target.commit()
