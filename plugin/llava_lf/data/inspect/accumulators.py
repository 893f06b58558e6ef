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
from collections.abc import Callable
from dataclasses import dataclass


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

    When the table passes `capacity`, the texts at or below the count that halves it are dropped (and
    handed to `on_drop` first, so figures derived from them stay exact); any text counted more often
    than `dropped_below` is therefore among those kept. Exact repeat counts come from `RepeatCounter`'s
    hashes; this keeps the words.
    """

    def __init__(self, capacity: int = CAPACITY, on_drop: Callable[[dict[str, int]], None] | None = None):
        self.capacity = capacity
        self.counts: Counter[str] = Counter()
        self.dropped_below = 0  # counts at or below this were dropped at least once
        self._on_drop = on_drop

    def update(self, texts: list[str]) -> None:
        _count_elements(self.counts, texts)  # Counter.update's C loop without its per-call Python checks
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
        if self._on_drop is not None:
            self._on_drop({text: n for text, n in self.counts.items() if n <= limit})
        self.counts = Counter({text: n for text, n in self.counts.items() if n > limit})

    def texts(self) -> dict[int, str]:
        """hash -> text of the texts kept."""
        return {hash(text): text for text in self.counts}

    def most_common(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]


class RepeatCounter:
    """Exact repeat counts through hashes, the words of the frequent texts kept by a `LossyCounter`.

    `derived` counts a function of each text (e.g. its first word) exactly, at no cost per record:
    texts are folded in when the lossy table drops them and, for the rest, at the end.
    """

    def __init__(self, capacity: int = CAPACITY, derive: Callable[[str], tuple[str, ...]] | None = None):
        self._hashes = array("q")
        self._derive = derive
        self._derived: list[Counter[str]] = []
        self._texts = LossyCounter(capacity, self._fold if derive is not None else None)

    def update(self, texts: list[str]) -> None:
        # Texts are compared on their first KEY_CHARS characters, so memory is bounded per text too
        # (a ShareGPT answer runs to kilobytes); slicing a shorter string returns it as it is.
        keys = [text[:KEY_CHARS] for text in texts]
        self._hashes.extend(map(hash, keys))
        self._texts.update(keys)

    def _fold(self, counts: dict[str, int], into: list[Counter[str]] | None = None) -> list[Counter[str]]:
        into = self._derived if into is None else into
        for text, n in counts.items():
            for position, key in enumerate(self._derive(text)):
                while len(into) <= position:
                    into.append(Counter())
                into[position][key] += n
        return into

    def derived(self) -> list[Counter[str]]:
        """Counts of each of `derive`'s outputs over every text added."""
        return self._fold(self._texts.counts, [Counter(c) for c in self._derived])

    @property
    def total(self) -> int:
        return len(self._hashes)

    def most_repeated(self, n: int) -> tuple[int, int, list[tuple[str, int]]]:
        """(distinct texts, texts seen twice or more, the n seen most often (twice or more) with exact counts)."""
        import numpy as np

        hashes = np.frombuffer(self._hashes, dtype=np.int64) if self._hashes else np.zeros(0, dtype=np.int64)
        values, counts = np.unique(hashes, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:n]
        texts = self._texts.texts()
        top = [(texts.get(key, "(text not kept: too rare to hold in memory)"), count)
               for key, count in zip(values[order].tolist(), counts[order].tolist()) if count > 1]
        return len(values), int((counts > 1).sum()), sorted(top, key=lambda item: (-item[1], item[0]))
