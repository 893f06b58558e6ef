"""Resolve a record's image paths inside the image folder, refusing any that escape it, at one `lstat` per image;
output paths are relative to the dataset folder (where the host looks) unless `absolute=True`.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from .report import Problem

_DIRECTORY_CACHE_LIMIT = 100_000  # distinct directories remembered before the cache starts over


@dataclass(frozen=True)
class _Directory:
    logical: str  # the directory under the image folder, symlinks not followed
    escapes_to: str | None  # its real location when a symlink leads out of the image folder
    prefix: str  # how output paths to its files begin ("" or ending in "/")


class ImageFolder:
    def __init__(self, root: Path, out_dir: Path | None, absolute: bool = False, allow_symlinks: bool = False):
        self.root = os.path.realpath(root)
        self._inside = self.root.rstrip(os.sep) + os.sep
        self._out = os.path.realpath(out_dir) if out_dir is not None else self.root
        self._absolute, self._allow_symlinks = absolute, allow_symlinks
        self._directories: dict[str, _Directory] = {}

    def resolve(self, path: str, field: str, problems: list[Problem]) -> tuple[str, str] | None:
        """(path to write, absolute path to open), or None with a problem added."""
        if path.startswith(("/", "\\", "~")) or posixpath.isabs(path):
            problems.append(Problem("path_escape", field, f"{path!r:.200} is absolute",
                                    "write image paths relative to --image-folder"))
            return None
        if "//" in path or "./" in path or path.endswith("/."):
            path = posixpath.normpath(path)
        if path == ".." or path.startswith("../") or "/../" in path or path.endswith("/.."):
            problems.append(Problem("path_escape", field, f"{path!r:.200} climbs out of the image folder with '..'",
                                    "write image paths relative to --image-folder, without '..'"))
            return None
        folder, _, name = path.rpartition("/")
        directory = self._directories.get(folder) or self._directory(folder)
        if directory.escapes_to is not None:
            problems.append(self._symlink_out(path, field, directory.escapes_to))
            return None
        full = f"{directory.logical}/{name}"
        try:
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                real = os.path.realpath(full)
                if not self._allow_symlinks and not real.startswith(self._inside):
                    problems.append(self._symlink_out(path, field, real))
                    return None
                mode = os.stat(full).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode, what = None, "does not exist"
        except OSError as error:  # a symlink loop, a name too long, a folder we may not enter
            mode, what = None, f"cannot be opened ({error.strerror or type(error).__name__})"
        if mode is None or not stat.S_ISREG(mode):
            what = "is not a file" if mode is not None else what
            problems.append(Problem("missing_image", field, f"{path!r:.200} {what} under the image folder "
                                    f"({full:.300})",
                                    "fix the path, or point --image-folder at the folder the paths start from"))
            return None
        return directory.prefix + name, full

    def _directory(self, folder: str) -> _Directory:
        if len(self._directories) >= _DIRECTORY_CACHE_LIMIT:
            self._directories.clear()
        logical = os.path.join(self.root, folder) if folder else self.root
        real = os.path.realpath(logical)
        inside = real == self.root or real.startswith(self._inside)
        written_as = logical if self._absolute else os.path.relpath(logical, self._out)
        prefix = "" if written_as == "." else written_as + "/"
        entry = _Directory(logical, None if inside or self._allow_symlinks else real, prefix)
        self._directories[folder] = entry
        return entry

    def _symlink_out(self, path: str, field: str, real: str) -> Problem:
        return Problem("path_escape", field, f"{path!r:.200} leads out of the image folder through a symlink (to {real})",
                       "pass the real folder as --image-folder, copy the images in, or allow it with "
                       "--allow-symlinks")
