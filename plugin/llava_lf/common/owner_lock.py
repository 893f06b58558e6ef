"""Leftovers told by an OS lock, not by a pid: a run holds a `flock` on a file of its own while it uses it and the
kernel drops it when the run dies (`kill -9` too), so a later run that can take the lock may remove the leftovers.

A `flock` belongs to the open file: a second open in the same process is refused too, and a forked child shares it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FOLDER_LOCK = ".owner.lock"  # inside each folder made by `held_folder`


def _take(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a cleaner may have removed it just before we locked)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def create_held(path: Path) -> int | None:
    """Create `path` (which must not exist) write-only and lock it; its descriptor, or None when a cleaner
    took it in the instant between creating and locking (then try another name)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides the mode, as open() does
    if _take(fd) and _still_named(fd, path):
        return fd
    os.close(fd)
    return None


@contextmanager
def abandoned(path: Path) -> Iterator[bool]:
    """True, with the lock held for the block, when `path` is a held file whose owner is gone."""
    try:
        # Write access: NFS emulates flock with fcntl locks, whose exclusive kind needs it.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # gone, a folder, a link, or not ours to open: not ours to remove
        fd = None
    try:
        yield fd is not None and _take(fd) and _still_named(fd, path)
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def held_folder(root: Path, prefix: str) -> Iterator[Path]:
    """A new folder `root/<prefix><random>`, held for the block and removed after it."""
    while True:
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        fd = create_held(folder / FOLDER_LOCK)
        if fd is not None:
            break  # else a cleaner holds the lock file and removes the folder
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # before the lock goes, so no cleaner races us
        os.close(fd)


def remove_abandoned_folders(root: Path, prefix: str) -> list[Path]:
    """Remove the folders `held_folder` made under `root` whose owner is gone; the ones removed."""
    removed = []
    for folder in root.glob(f"{prefix}*"):
        with abandoned(folder / FOLDER_LOCK) as gone:
            if gone:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed
