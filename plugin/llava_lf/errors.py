"""One error type for every expected failure (bad input, a missing file, a choice that cannot work), and the
exit codes of `llava-lf`. Only `llava_lf.cli.run` turns an error into a message and an exit code.

An error carries every problem found (each says what, where and how to fix it), so a user fixes them all in
one round. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_REJECTED = 1  # the run finished, but records were rejected (check; convert --strict) or pairs failed (generate)
EXIT_BAD_INPUT = 2  # an LlavaLfError or an OSError: nothing (or nothing more) could be done with this input
EXIT_INTERNAL = 3  # a bug: an unexpected exception, reported with its traceback
EXIT_NOT_REGISTERED = 4  # `llava-lf doctor`: the host sees none of our templates (the import hook did not run)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class LlavaLfError(Exception):
    """An expected failure, with the list of problems found (each a full sentence naming the fix)."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        if not self.problems:
            self.problems = ["unknown problem"]
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)
