"""Never resume from a checkpoint that a kill left half-written: the callback moves the host's choice back to the
newest `checkpoint-N` whose `trainer_state.json` (written last) reads (docs/recipe.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class ResumeChoice:
    checkpoint: str | None  # what to resume from (None: start from the beginning)
    skipped: tuple[str, ...] = ()  # incomplete checkpoints passed over, newest first
    refused: bool = False  # an incomplete checkpoint chosen by hand (not the newest): the run must stop

    @property
    def changed(self) -> bool:
        return bool(self.skipped)


def is_complete(checkpoint: Path) -> bool:
    """True when the checkpoint's last file, `trainer_state.json`, was written whole."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and isinstance(state.get("global_step"), int)


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [(int(match.group(1)), path) for path in output_dir.iterdir()
             if path.is_dir() and (match := _CHECKPOINT.match(path.name))] if output_dir.is_dir() else []
    return [path for _, path in sorted(found, reverse=True)]


def choose_resume_point(output_dir: str | Path, chosen: str | None) -> ResumeChoice:
    """Keep a complete choice; replace the host's pick of an incomplete newest checkpoint by the newest complete one.

    An incomplete checkpoint that is not the newest was chosen by hand: `refused`, the caller stops the run.
    """
    if not chosen:
        return ResumeChoice(chosen)
    path = Path(chosen)
    if is_complete(path):
        return ResumeChoice(chosen)
    newest = checkpoints_newest_first(Path(output_dir))
    if not newest or newest[0].resolve() != path.resolve():
        return ResumeChoice(None, (str(path),), refused=True)
    skipped = []
    for candidate in newest:
        if is_complete(candidate):
            return ResumeChoice(str(candidate), tuple(skipped))
        skipped.append(str(candidate))
    return ResumeChoice(None, tuple(skipped))
