"""Put a finished checkpoint at `--out` so that a kill at any moment leaves the old one or the new one there:
a staging folder, then one rename or an atomic swap (docs/assemble.md). One assembly per `--out` at a time.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .spec import AssemblyError

PARTIAL, REPLACED = ".partial-", ".replaced-"
AT_FDCWD, RENAME_EXCHANGE = -100, 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories atomically; False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def leftovers(out: Path) -> list[Path]:
    """Staging folders of earlier runs for `out` (new checkpoints cut short, old ones set aside)."""
    if not out.parent.is_dir():
        return []
    prefixes = (f".{out.name}{PARTIAL}", f".{out.name}{REPLACED}")
    return sorted(path for path in out.parent.iterdir() if path.name.startswith(prefixes))


def recover(out: Path) -> Path | None:
    """Move a checkpoint set aside by a run killed between its two renames back to `out`; return it if moved."""
    if out.exists() or out.is_symlink():
        return None
    set_aside = [path / out.name for path in leftovers(out) if REPLACED in path.name]
    for candidate in sorted(set_aside, key=lambda path: path.stat().st_mtime if path.exists() else 0, reverse=True):
        if (candidate / "config.json").is_file():
            candidate.rename(out)
            return out
    return None


def staging_dir(out: Path) -> Path:
    """A new empty folder beside `out`; an --out that cannot be written to is an error naming it."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL}", dir=out.parent))
    except OSError as error:
        raise AssemblyError(f"--out {out}: cannot write there ({error.strerror or error}); "
                            "choose a directory you can write to") from error


def publish(staging: Path, out: Path) -> None:
    """Make `staging` the checkpoint at `out`, then delete what earlier runs left beside it."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
    elif _exchange(staging, out):
        shutil.rmtree(staging)  # now the old checkpoint
    else:
        previous = Path(tempfile.mkdtemp(prefix=f".{out.name}{REPLACED}", dir=out.parent))
        out.rename(previous / out.name)
        staging.rename(out)
        shutil.rmtree(previous)
    for path in leftovers(out):
        shutil.rmtree(path, ignore_errors=True)
