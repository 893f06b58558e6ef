"""Every place the plugin changes a host function: one `Seam` per wrapped function (`dataset_run`, `optimizer`,
`webui_labels`), applied only when the host has the shape it relies on, never by version (docs/compatibility.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from llava_lf.errors import LlavaLfError


@dataclass
class Seam:
    """One host function we wrap: where it is, what it serves, and the checks of the shape we rely on."""

    feature: str
    symbol: str
    checks: Callable[[], list[str]]
    _warned: bool = field(default=False, repr=False)

    def check(self) -> list[str]:
        """What does not fit on this host (empty: the seam is there as we rely on it)."""
        try:
            return self.checks()
        except Exception as error:  # an import or attribute error is itself a misfit, never a crash
            return [f"{type(error).__name__}: {error}"]

    def problem(self, misfits: list[str]) -> str:
        return (f"{self.feature} needs the host function {self.symbol} in the shape llava_lf wraps, and this host "
                f"differs: {'; '.join(misfits)}. Use a LLaMA-Factory in the tested range (docs/compatibility.md)")

    def say_once(self, misfits: list[str]) -> None:
        """One stderr line per process for a seam that does not fit (its feature stays off)."""
        if not self._warned:
            self._warned = True
            sys.stderr.write(f"llava-lf: {self.feature} is off: {self.problem(misfits)}\n")

    def require(self) -> None:
        """Stop a run that asked for this feature when the seam does not fit."""
        misfits = self.check()
        if misfits:
            raise LlavaLfError(self.problem(misfits))


def has_parameters(function: Callable, names: list[str]) -> list[str]:
    """Misfits when `function` does not take these parameters in this order (first ones)."""
    import inspect

    found = list(inspect.signature(function).parameters)
    return [] if found[: len(names)] == names else [f"{function.__qualname__} takes {found}, expected {names} first"]


def calls_by_name(function: Callable, name: str) -> list[str]:
    """Misfits when `function`'s code does not look `name` up by name (so a rebound module global reaches it)."""
    code = getattr(function, "__code__", None)
    if code is None or name not in code.co_names:
        return [f"{getattr(function, '__qualname__', function)} no longer calls {name}"]
    return []
