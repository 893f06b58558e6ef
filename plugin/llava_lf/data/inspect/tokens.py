"""Tokens per record as training sees them, and what `--cutoff-len` would do to each record.

The converter's `TurnBudget` counts each human/gpt pair with the host's template and tokenizer, each
`<image>` as its image tokens; `fit_turns` (the rule training and the converter share) keeps the longest
run of whole pairs within the cutoff. A record whose first pair alone is too long is one the converter
rejects (`too_long`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_lf.data.convert.records import LlavaTurn
from llava_lf.data.convert.report import Problem
from llava_lf.data.convert.validate import too_long_problem


@dataclass(frozen=True)
class TokenSpec:
    tokenizer: Path
    template: str = "llava_v1"
    cutoff_len: int | None = None  # None: count only
    image_tokens: int | None = None  # overrides the processor config's count


@dataclass(frozen=True, slots=True)
class TokenFit:
    """One record's tokens and what the cutoff does to it (action None: no cutoff)."""

    tokens: int
    action: str | None  # kept / trimmed / dropped
    pairs_cut: int


class TokenCounter:
    def __init__(self, spec: TokenSpec):
        # Imported here: they load llamafactory (and torch), which a count without a tokenizer never needs.
        from llava_lf.data.convert.cutoff import CutoffSpec, TurnBudget

        # Without a cutoff the budget is only used to count (its own cutoff then never binds).
        self._budget = TurnBudget(CutoffSpec(spec.cutoff_len or 1 << 30, spec.tokenizer, spec.template,
                                             spec.image_tokens))
        self.cutoff_len = spec.cutoff_len
        self.image_tokens = self._budget.image_tokens
        from llava_lf.common.turn_fit import fit_turns

        self._fit = fit_turns
        cutoff = f", cutoff {spec.cutoff_len}" if spec.cutoff_len is not None else ""
        self.notes = [f"tokens counted with template {spec.template}{cutoff}; {self.image_tokens} tokens per image",
                      *self._budget.notes[1:]]

    def count(self, turns: list[LlavaTurn], problems: list[Problem]) -> TokenFit:
        """The record's tokens and fit; a `too_long` problem when its first pair alone is over the cutoff."""
        lengths = self._budget.pair_lengths(turns)
        if self.cutoff_len is None:
            return TokenFit(sum(lengths), None, 0)
        fit = self._fit(lengths, self.cutoff_len)
        if fit.action == "dropped":  # the converter's own rejection
            problems.append(too_long_problem(lengths[0], self.cutoff_len))
        return TokenFit(sum(lengths), fit.action, len(lengths) - fit.kept_pairs)
