"""Tokens per record as training sees them, and what `--cutoff-len` would do: the converter's `TurnBudget` (the
host's template and tokenizer) and the turn-fitting rule training shares, so the card cannot disagree with either."""

from __future__ import annotations

from pathlib import Path

from llava_lf.data.convert.records import LlavaTurn
from llava_lf.data.convert.report import Problem
from llava_lf.data.convert.validate import too_long_problem


class TokenCounter:
    def __init__(self, tokenizer: Path, template: str, cutoff_len: int | None, image_tokens: int | None,
                 per_record: bool = True):
        # Imported here: they load llamafactory (and torch), which a count without a tokenizer never needs.
        from llava_lf.common.turn_fit import fit_turns
        from llava_lf.data.convert.cutoff import CutoffSpec, TurnBudget

        # Without a cutoff the budget only counts (its own cutoff then never binds).
        self._budget = TurnBudget(CutoffSpec(cutoff_len or 1 << 30, tokenizer, template, image_tokens))
        self._fit, self.cutoff_len = fit_turns, cutoff_len
        self.tokenizer, self.template = tokenizer, template
        # Tokens per image in the counts; None when an image's count is its own (LLaVA-NeXT: the model view adds it),
        # which leaves the lengths table without tokens.
        self.image_tokens = self._budget.image_tokens if per_record else None
        cutoff = f", cutoff {cutoff_len}" if cutoff_len is not None else ""
        self.notes = [f"tokens counted with template {template}{cutoff}; {self._budget.image_tokens} tokens per image",
                      *self._budget.notes[1:]] if per_record else list(self._budget.notes[1:])

    def count(self, turns: list[LlavaTurn], problems: list[Problem]) -> tuple[int, str | None, int]:
        """The record's `tokens` row: its tokens, what the cutoff does (kept / trimmed / dropped; None without one)
        and the pairs it cuts; the converter's `too_long` problem when the first pair alone is too long."""
        lengths = self._budget.pair_lengths(turns)
        if self.cutoff_len is None:
            return sum(lengths), None, 0
        fit = self._fit(lengths, self.cutoff_len)
        if fit.action == "dropped":
            problems.append(too_long_problem(lengths[0], self.cutoff_len))
        return sum(lengths), fit.action, len(lengths) - fit.kept_pairs
