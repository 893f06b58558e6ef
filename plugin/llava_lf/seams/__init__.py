"""Every place the plugin touches a host or library symbol beyond the host's public registries: a method it overrides
or calls through `super()`, a function it wraps, a private attribute it reads. Each is declared once as a `Seam` (in
`registry.ALL`) with a check of the shape the plugin relies on, never of a version (docs/compatibility.md).

This package sits at the bottom of the plugin's layers: templates, training and registration import it, it imports
none of them. Importing it loads nothing of the host; the checks import what they look at.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from llava_lf.errors import LlavaLfError

_SAID: set[str] = set()  # features already said to be off in this process


@dataclass(frozen=True)
class Seam:
    """One host or library symbol the plugin relies on: the feature it serves, where it is, and the shape checks."""

    feature: str
    symbol: str  # dotted: module, then class and attribute
    module: str  # the module the checks look at: they run once it has been imported
    checks: Callable[[], list[str]]
    ours: str = ""  # where the plugin touches it (module: names), for the docs and the reader

    def check(self) -> list[str]:
        """What does not fit on this host (empty: the symbol is there as we rely on it)."""
        try:
            return self.checks()
        except Exception as error:  # an import or attribute error is itself a misfit, never a crash
            return [f"{type(error).__name__}: {error}"]

    def problem(self, misfits: list[str]) -> str:
        return (f"{self.feature} needs {self.symbol} in the shape llava_lf relies on, and this host differs: "
                f"{'; '.join(misfits)}. Use a LLaMA-Factory in the tested range (docs/compatibility.md)")

    def say_once(self, misfits: list[str]) -> None:
        """One stderr line per feature and process for a seam that does not fit."""
        if self.feature not in _SAID:
            _SAID.add(self.feature)
            sys.stderr.write(f"llava-lf: {self.feature} is off: {self.problem(misfits)}\n")

    def check_and_say(self) -> list[str]:
        misfits = self.check()
        if misfits:
            self.say_once(misfits)
        return misfits

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


def _code_words(function: Callable, strings: bool) -> set[str]:
    """The names (or the string constants) of `function`'s code, behind its decorators, with its nested functions,
    comprehensions and constant tuples (a dict literal's keys)."""
    import inspect

    stack, words = [getattr(inspect.unwrap(function), "__code__", None)], set()
    while stack:
        code = stack.pop()
        if code is None:
            continue
        if not strings:
            words.update(code.co_names)
        constants = list(code.co_consts)
        while constants:
            constant = constants.pop()
            if hasattr(constant, "co_names"):
                stack.append(constant)
            elif isinstance(constant, (tuple, frozenset)):
                constants.extend(constant)
            elif strings and isinstance(constant, str):
                words.add(constant)
    return words


def calls_by_name(function: Callable, name: str) -> list[str]:
    """Misfits when `function`'s code does not look `name` up by name (so a rebound global or an override reaches it)."""
    if name not in _code_words(function, strings=False):
        return [f"{getattr(function, '__qualname__', function)} no longer uses {name}"]
    return []


def mentions(function: Callable, text: str) -> list[str]:
    """Misfits when `function`'s code holds no string constant `text` (an element id, a key)."""
    if text not in _code_words(function, strings=True):
        return [f"{getattr(function, '__qualname__', function)} no longer names {text!r}"]
    return []


def has_fields(cls: type, names: list[str]) -> list[str]:
    """Misfits when the dataclass `cls` lacks one of these fields."""
    fields = getattr(cls, "__dataclass_fields__", {})
    return [f"{cls.__name__} has no field {name}" for name in names if name not in fields]


def has_methods(cls: type, names: list[str]) -> list[str]:
    return [f"{cls.__name__} has no method {name}" for name in names if not callable(getattr(cls, name, None))]
