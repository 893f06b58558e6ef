"""Where `convert` and `check` may write, checked before anything is touched.

A dataset name is a plain file stem; `--out` is a folder (created if missing); no output is one of
the inputs (same path, a link to it, or the same inode); `dataset_info.json` already there must be
readable JSON. Every problem found is reported at once, each naming the file and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .writer import read_dataset_info

# Letters, digits, '_', '-', '.', '+'; starts with a letter or digit (no '.x' hidden files, no '..').
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_RESERVED_NAMES = frozenset({"dataset_info"})


@dataclass(frozen=True)
class ConvertOutputs:
    folder: Path
    dataset: Path
    rejected: Path
    info: Path
    created: bool = False  # the folder did not exist: a failed run removes it again (when still empty)

    def remove_if_created(self) -> None:
        if self.created:
            try:
                self.folder.rmdir()
            except OSError:  # not empty (someone wrote there meanwhile) or gone: leave it
                pass


def check_name(name: str) -> list[str]:
    """Problems with a dataset name ([] when it is a plain file stem)."""
    if _DATASET_NAME.fullmatch(name) and name not in _RESERVED_NAMES and not name.endswith("."):
        return []
    shown = f"{name!r:.80}" + ("..." if len(name) > 78 else "")
    return [f"--name {shown} is not a plain dataset name: use letters, digits, '_', '-', '.' and '+' (starting with a "
            "letter or digit, at most 128 characters, not 'dataset_info'), e.g. --name llava_instruct_150k"]


def check_readable(src: Path, what: str = "the source") -> list[str]:
    try:
        with open(src, "rb"):
            return []
    except OSError as error:
        return [f"{src}: {what} cannot be read ({error.strerror or error}); pass an existing JSON or JSON Lines file"]


def check_image_folder(folder: Path) -> list[str]:
    if Path(folder).is_dir():
        return []
    state = "does not exist" if not os.path.lexists(folder) else "is not a folder"
    return [f"--image-folder {folder} {state}; pass the folder the records' 'image' paths start from"]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing (or unreachable): then they are not one file
        return False


def check_not_inputs(outputs: list[Path], inputs: list[Path]) -> list[str]:
    """An output that is an input (or a link to it, or a hard link of it) would be replaced while read."""
    problems = []
    for output in outputs:
        for source in inputs:
            if _same_file(output, source) or os.path.realpath(output) == os.path.realpath(source):
                problems.append(f"{output} is the input {source}: writing it would destroy the input; choose "
                                "another --out/--name (or --report)")
        if os.path.isdir(output):
            problems.append(f"{output} is a folder; move it away or choose another --name (or --report)")
    return problems


def plan_convert_outputs(src: Path | None, image_folder: Path | None, out_dir: Path, name: str,
                         inputs: list[Path] | None = None) -> ConvertOutputs:
    """The paths `convert` will write, once every check passed; raises `LlavaLfError` listing every problem.

    `src` is the JSON file (None for parquet shards, read already), `inputs` every file read (default [src]);
    `image_folder` None: none given (parquet's is optional).
    """
    out_dir = Path(out_dir)
    inputs = inputs if inputs is not None else [Path(src)]
    problems = check_name(name) + (check_readable(src) if src is not None else [])
    problems += check_image_folder(image_folder) if image_folder is not None else []
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        problems.append(f"--out {out_dir} is a file, not a folder; pass a folder (it is created if missing)")
    outputs = ConvertOutputs(out_dir, out_dir / f"{name}.jsonl", out_dir / f"{name}.rejected.jsonl",
                             out_dir / "dataset_info.json")
    if not problems:
        problems += check_not_inputs([outputs.dataset, outputs.rejected, outputs.info], inputs)
    if not problems:
        try:
            read_dataset_info(outputs.info)
        except LlavaLfError as error:
            problems += error.problems
    if problems:
        raise LlavaLfError(problems)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlavaLfError(f"--out {out_dir}: cannot create the folder ({error.strerror or error}); pass a folder "
                          "you can write in") from None
    return replace(outputs, created=created)


def open_failed(folder: Path, error: OSError) -> LlavaLfError:
    """A temporary output could not be created: the folder is not writable (or full)."""
    return LlavaLfError(f"{folder}: cannot write there ({error.strerror or error}); pass a folder you can write in "
                       "(nothing was changed)")
