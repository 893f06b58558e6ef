"""Figures gathered in one pass with memory that does not grow with the file.

Integer distributions keep one counter slot per distinct value (words and tokens per record take a
few thousand distinct values, however many records). Repeated texts are counted exactly through
64-bit hashes in a flat array (8 bytes per text, sorted once at the end); the texts themselves are kept
only for the frequent ones, by lossy counting (Manku and Motwani): any text seen at least
`total / width` times is guaranteed to be among those kept, so the most repeated ones keep their words.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
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
        self.counts.update(values)

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


class LossyCounter:
    """Approximate counts of texts in bounded memory: keeps every text seen more than total / width times."""

    def __init__(self, width: int = 20_000):
        self.width = width
        self.total = 0
        self._bucket = 1
        self._entries: dict[str, list[int]] = {}  # text -> [count, maximum undercount]

    def add(self, text: str) -> None:
        entry = self._entries.get(text)
        if entry is None:
            self._entries[text] = [1, self._bucket - 1]
        else:
            entry[0] += 1
        self.total += 1
        if self.total % self.width == 0:
            bucket = self._bucket
            self._entries = {t: e for t, e in self._entries.items() if e[0] + e[1] > bucket}
            self._bucket += 1

    def texts(self) -> dict[int, str]:
        """hash -> text of the texts kept."""
        return {hash(text): text for text in self._entries}

    def most_common(self, n: int) -> list[tuple[str, int]]:
        """Top texts by kept count (exact while the texts are fewer than `width`)."""
        ranked = sorted(self._entries.items(), key=lambda item: (-item[1][0], item[0]))
        return [(text, entry[0]) for text, entry in ranked[:n]]


class RepeatCounter:
    """Exact repeat counts through hashes, the words of the frequent texts kept by a `LossyCounter`."""

    def __init__(self, width: int = 20_000):
        self._hashes = array("q")
        self._texts = LossyCounter(width)

    def add(self, text: str) -> None:
        self._hashes.append(hash(text))
        self._texts.add(text)

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
