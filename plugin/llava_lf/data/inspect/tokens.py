"""Tokens per record as training sees them, and what `--cutoff-len` would do to each record.

The converter's `TurnBudget` counts each human/gpt pair with the host's template and tokenizer, each
`<image>` as its image tokens; `fit_turns` (the rule training and the converter share) keeps the longest
run of whole pairs within the cutoff. A record whose first pair alone is too long is one the converter
rejects (`too_long`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.data.convert.records import LlavaTurn
from llava_lf.data.convert.report import Problem
from llava_lf.data.convert.validate import too_long_problem

from .accumulators import Distribution


@dataclass(frozen=True)
class TokenSpec:
    tokenizer: Path
    template: str = "llava_v1"
    cutoff_len: int | None = None  # None: count only
    image_tokens: int | None = None  # overrides the processor config's count


@dataclass
class TokenStats:
    """Per dataset: the token distribution, and the records and pairs the cutoff would cut."""

    cutoff_len: int | None
    per_record: Distribution = field(default_factory=Distribution)
    actions: Counter[str] = field(default_factory=Counter)  # kept / trimmed / dropped
    pairs_cut: int = 0
    pairs_cut_per_record: Counter[int] = field(default_factory=Counter)  # pairs cut -> records

    def to_json(self) -> dict:
        summary = self.per_record.summary()
        row = {"per_record": summary.to_json() if summary else None, "cutoff_len": self.cutoff_len,
               "per_record_counts": {str(k): v for k, v in sorted(self.per_record.counts.items())}}
        if self.cutoff_len is not None:
            counted = self.per_record.count
            row |= {"over_cutoff": self.actions["trimmed"] + self.actions["dropped"],
                    "over_cutoff_share": (self.actions["trimmed"] + self.actions["dropped"]) / counted if counted else 0.0,
                    "trimmed": self.actions["trimmed"], "dropped": self.actions["dropped"], "pairs_cut": self.pairs_cut,
                    "pairs_cut_per_record": {str(k): v for k, v in sorted(self.pairs_cut_per_record.items())}}
        return row


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

    def count(self, turns: list[LlavaTurn], stats: TokenStats, problems: list[Problem]) -> list[int]:
        """Each pair's tokens; the record's fit is added to `stats`, a `too_long` problem when nothing fits."""
        lengths = self._budget.pair_lengths(turns)
        stats.per_record.add(sum(lengths))
        if self.cutoff_len is not None:
            fit = self._fit(lengths, self.cutoff_len)
            stats.actions[fit.action] += 1
            cut = len(lengths) - fit.kept_pairs
            if cut:
                stats.pairs_cut += cut
                stats.pairs_cut_per_record[cut] += 1
            if fit.action == "dropped":  # the converter's own rejection
                problems.append(too_long_problem(lengths[0], self.cutoff_len))
        return lengths
