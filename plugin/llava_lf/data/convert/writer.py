"""Atomic output (the dataset, its rejection report, the `dataset_info.json` entry): each file is written under a
locked temporary name and renamed when complete, so a killed run leaves the previous output (docs/data.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import orjson
from filelock import FileLock

from llava_lf.common.owner_lock import abandoned, create_held
from llava_lf.errors import LlavaLfError

from .records import SharegptRecord

TMP_PREFIX = ".llava-lf-tmp."
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{32}\.")
LOCK_NAME = ".dataset_info.json.lock"  # kept between runs (removing a lock file races with its next user)


def json_line(row: object) -> bytes:
    """One JSON line; rows orjson refuses (lone surrogates, integers over 64 bits) are written by `json`."""
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError: json escapes surrogates (as \\u and four hex digits) and writes any integer
        return (json.dumps(row, ensure_ascii=True) + "\n").encode("ascii")


class AtomicFile:
    """A binary file that replaces `path` on `commit()` and vanishes on `discard()`."""

    def __init__(self, path: Path):
        self.path = path
        fd = None
        while fd is None:  # None: a cleaner took the new name before we locked it (an instant's race)
            self._tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}.{path.name}"[:255])
            fd = create_held(self._tmp)
        # Open, and so locked, across many writes; closed by commit()/discard().
        self.handle = open(fd, "wb", buffering=1 << 20)  # noqa: SIM115

    def write_json_line(self, row: object) -> None:
        self.handle.write(json_line(row))

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())  # the rename must never publish a file whose bytes are not on disk
        try:
            os.replace(self._tmp, self.path)  # before closing: while the lock is held, no cleaner takes the file
        finally:
            self.handle.close()

    def discard(self) -> None:
        self._tmp.unlink(missing_ok=True)
        self.handle.close()


def remove_leftovers(folder: Path) -> list[str]:
    """Remove temporary files that killed runs left in `folder` (ours by name, their lock free)."""
    removed = []
    for entry in os.scandir(folder):
        if _TMP_NAME.match(entry.name):
            with abandoned(Path(entry.path)) as gone:
                if gone:
                    Path(entry.path).unlink(missing_ok=True)
                    removed.append(entry.name)
    return removed


class DatasetWriter:
    """Writes sharegpt JSONL with the first image record first.

    The host loads JSONL with `datasets`, which fixes each column's type from the first block (about
    10 MB): if that block holds only text-only records, `images` becomes a list of nulls and the first
    image record later fails with "Couldn't cast array of type string to null". Text-only records that
    come before the first image record are held in a spill file and follow it.
    """

    def __init__(self, path: Path):
        self.file = AtomicFile(path)
        self._spill = None  # text-only records held back, on disk (an unnamed file: nothing left if killed)
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


def dataset_info_lock(out_dir: Path) -> FileLock:
    """Serialises read-modify-write of `out_dir/dataset_info.json` between processes."""
    return FileLock(Path(out_dir) / LOCK_NAME)


def read_dataset_info(info_path: Path) -> dict:
    """The entries of a `dataset_info.json` ({} when absent); an unreadable one is an error naming it."""
    try:
        text = info_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise LlavaLfError(f"{info_path}: cannot be read ({error}); fix its permissions or remove it "
                           "(nothing was written)") from None
    try:
        info = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError, or an integer over Python's digit limit
        raise LlavaLfError(f"{info_path}: not valid JSON ({error}); fix or remove it (nothing was written)") from None
    if not isinstance(info, dict):
        raise LlavaLfError(f"{info_path} is not a JSON object of dataset entries; fix or remove it "
                           "(nothing was written)")
    return info


def update_dataset_info(out_dir: Path, name: str, entry: dict) -> None:
    """Add or replace one entry of `out_dir/dataset_info.json`, leaving the others as they were."""
    info_path = Path(out_dir) / "dataset_info.json"
    with dataset_info_lock(info_path.parent):
        info = read_dataset_info(info_path)
        if info.get(name) == entry:
            return  # registered already: nothing to rewrite
        info[name] = entry
        target = AtomicFile(info_path)
        try:
            target.handle.write((json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        except BaseException:
            target.discard()
            raise
        target.commit()
