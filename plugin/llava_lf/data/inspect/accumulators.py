"""Figures gathered in one pass with memory that does not grow with the file.

Integer distributions keep one counter slot per distinct value (words and tokens per record take a
few thousand distinct values, however many records). Repeated texts are counted exactly through
64-bit hashes in a flat array (8 bytes per text, counted once at the end); the texts themselves are kept
only while they are frequent enough (`LossyCounter`), so the most repeated ones keep their words.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter, _count_elements  # the C loop behind Counter.update
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    min: int
    p50: int
    p90: int
    p99: int
    max: int
    total: int

    def to_json(self) -> dict:
        return {"count": self.count, "mean": round(self.mean, 2), "min": self.min, "p50": self.p50,
                "p90": self.p90, "p99": self.p99, "max": self.max, "total": self.total}


class Distribution:
    """Exact distribution of integer values (one counter slot per distinct value)."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def add(self, value: int) -> None:
        self.counts[value] += 1

    def update(self, values) -> None:
        _count_elements(self.counts, values)

    def merge(self, other: Distribution) -> None:
        self.counts.update(other.counts)

    @property
    def count(self) -> int:
        return self.counts.total()

    def share_over(self, limit: int) -> float:
        count = self.count
        return sum(n for value, n in self.counts.items() if value > limit) / count if count else 0.0

    def summary(self) -> Summary | None:
        count = self.count
        if not count:
            return None
        values = sorted(self.counts)
        cumulative, running = [], 0
        for value in values:
            running += self.counts[value]
            cumulative.append(running)

        def quantile(q: float) -> int:  # the smallest value with at least q of the records at or below it
            return values[bisect.bisect_left(cumulative, q * count)]

        total = sum(value * n for value, n in self.counts.items())
        return Summary(count, total / count, values[0], quantile(0.5), quantile(0.9), quantile(0.99), values[-1],
                       total)


KEY_CHARS = 256
CAPACITY = 100_000  # distinct texts held before the rarest are dropped


class LossyCounter:
    """Counts of texts in bounded memory: exact until `capacity` distinct texts, then the rarest are dropped.

    When the table passes `capacity`, the texts at or below the count that halves it are dropped; any
    text counted more often than `dropped_below` is therefore among those kept. Exact repeat counts come from `RepeatCounter`'s
    hashes; this keeps the words.
    """

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.counts: Counter[str] = Counter()
        self.dropped_below = 0  # counts at or below this were dropped at least once

    def update(self, texts: list[str]) -> None:
        _count_elements(self.counts, texts)  # Counter.update's C loop without its per-call Python checks
        if len(self.counts) > self.capacity:
            self._prune()

    def merge(self, other: LossyCounter) -> None:
        self.counts.update(other.counts)
        self.dropped_below = max(self.dropped_below, other.dropped_below)
        if len(self.counts) > self.capacity:
            self._prune()

    def _prune(self) -> None:
        by_count = Counter(self.counts.values())
        keep, limit = len(self.counts), 0
        for count in sorted(by_count):
            if keep <= self.capacity // 2:
                break
            keep -= by_count[count]
            limit = count
        self.dropped_below = max(self.dropped_below, limit)
        self.counts = Counter({text: n for text, n in self.counts.items() if n > limit})

    def texts(self) -> dict[int, str]:
        """hash -> text of the texts kept."""
        return {hash(text): text for text in self.counts}

    def most_common(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]


RUN_BLOCK = 1 << 20  # sorted hashes counted per block
FLUSH = 1 << 16  # texts gathered before they are counted in one C-level pass
_KEY = itemgetter(slice(0, KEY_CHARS))
_TWO = itemgetter(slice(0, 2))


class RepeatCounter:
    """Exact repeat counts through hashes, the words of the frequent texts kept by a `LossyCounter`.

    Texts are gathered and counted `FLUSH` at a time with C-level `map`s (no Python code per text).
    With `openings`, the first two words of each text are counted exactly too (as written, one entry
    per distinct pair; lower-cased and trimmed at the end by `opening_counts`).
    """

    def __init__(self, capacity: int = CAPACITY, openings: bool = False):
        self._hashes = array("q")
        self._pending: list[str] = []
        self._texts = LossyCounter(capacity)
        self._openings: Counter[str] | None = Counter() if openings else None

    def update(self, texts: list[str]) -> None:
        self._pending += texts
        if len(self._pending) >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        # Texts are compared on their first KEY_CHARS characters, so memory is bounded per text too
        # (a ShareGPT answer runs to kilobytes); slicing a shorter string returns it as it is.
        keys = list(map(_KEY, pending))
        self._hashes.extend(map(hash, keys))
        self._texts.update(keys)
        if self._openings is not None:  # " ".join(text.split(None, 2)[:2]) for each text
            _count_elements(self._openings, map(" ".join, map(_TWO, map(str.split, pending, repeat(None), repeat(2)))))

    def merge(self, other: RepeatCounter) -> None:
        """Add the texts `other` counted (hashes are comparable: the processes share the hash seed)."""
        self._flush()
        other._flush()
        self._hashes.extend(other._hashes)
        self._texts.merge(other._texts)
        if self._openings is not None and other._openings is not None:
            self._openings.update(other._openings)

    def opening_counts(self, punctuation: str) -> tuple[Counter[str], Counter[str]]:
        """Counts of the first word and of the first two words, lower-case, `punctuation` trimmed."""
        self._flush()
        first: Counter[str] = Counter()
        first_two: Counter[str] = Counter()
        for opening, n in (self._openings or {}).items():
            words = [word.strip(punctuation) for word in opening.lower().split()]
            first[words[0] if words else ""] += n
            first_two[" ".join(word for word in words if word)] += n
        return first, first_two

    @property
    def total(self) -> int:
        self._flush()
        return len(self._hashes)

    def most_repeated(self, n: int) -> tuple[int, int, list[tuple[str, int]]]:
        """(distinct texts, texts seen twice or more, the n seen most often (twice or more) with exact counts).

        The hashes are sorted in place and their runs counted a block at a time, so this needs no
        memory beyond the hashes themselves (a whole-array `np.unique` would need three times it).
        """
        import numpy as np

        self._flush()
        hashes = np.frombuffer(self._hashes, dtype=np.int64) if self._hashes else np.zeros(0, dtype=np.int64)
        hashes.sort()
        distinct = repeated = 0
        top: list[tuple[int, int]] = []  # (count, hash) of the most repeated so far
        run_hash, run_count = None, 0  # the run that the previous block ended in
        for begin in range(0, len(hashes), RUN_BLOCK):
            block = hashes[begin:begin + RUN_BLOCK]
            starts = np.flatnonzero(block[1:] != block[:-1]) + 1
            bounds = np.concatenate(([0], starts, [len(block)]))
            counts, firsts = np.diff(bounds), block[bounds[:-1]]
            if run_hash is not None and firsts[0] == run_hash:
                counts[0] += run_count  # the run goes on from the previous block
            elif run_hash is not None:
                distinct, repeated = distinct + 1, repeated + (run_count > 1)
                top.append((run_count, run_hash))
            # every run but the last is complete
            whole = counts[:-1]
            distinct += len(whole)
            repeated += int((whole > 1).sum())
            best = np.argsort(-whole, kind="stable")[:n]
            top = sorted(top + list(zip(whole[best].tolist(), firsts[:-1][best].tolist())), key=lambda item: -item[0])[:n]
            run_hash, run_count = int(firsts[-1]), int(counts[-1])
        if run_hash is not None:
            distinct, repeated = distinct + 1, repeated + (run_count > 1)
            top = sorted([*top, (run_count, run_hash)], key=lambda item: -item[0])[:n]
        texts = self._texts.texts()
        kept = [(texts.get(key, "(text not kept: too rare to hold in memory)"), count) for count, key in top if count > 1]
        return distinct, repeated, sorted(kept, key=lambda item: (-item[1], item[0]))
