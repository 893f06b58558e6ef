"""One error type for every expected failure: bad input, a missing file, a choice that cannot work.

It carries every problem found (each says what, where and how to fix it), so a user fixes them all in one
round. `llava-lf` prints them and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but some records were rejected and --strict asked for failure
EXIT_BAD_INPUT = 2  # an LlavaLfError: nothing (or nothing more) could be done with this input
EXIT_INTERNAL = 3  # a bug: an unexpected exception, reported with its traceback


class LlavaLfError(Exception):
    """An expected failure, with the list of problems found (each a full sentence naming the fix)."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        if not self.problems:
            self.problems = ["unknown problem"]
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)
