"""Figures gathered in one pass with memory that does not grow with the file.

Integer distributions keep one counter slot per distinct value (words and tokens per record take a
few thousand distinct values, however many records). Repeated texts are counted exactly through
64-bit hashes (8 bytes per text, counted once at the end), written to a spill folder on disk once they pass
8 MB; the texts themselves are kept only while they are frequent enough (`LossyCounter`), so the most
repeated ones keep their words.
"""

from __future__ import annotations

import bisect
import tempfile
import uuid
from array import array
from collections import Counter, _count_elements  # the C loop behind Counter.update
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from pathlib import Path

import numpy as np

from llava_lf.common.owner_lock import held_folder, remove_abandoned_folders


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
CAPACITY = 30_000  # distinct texts held before the rarest are dropped (only texts seen again come in)


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


FLUSH = 1 << 16  # texts gathered before they are counted in one C-level pass
SPILL_AT = 1 << 18  # hashes held in memory (2 MB) before they are written to the spill folder, when one is set
SEEN_SLOTS = 1 << 26  # bits (8 MB) that tell a text seen before from a new one, two per hash
BUCKETS = 16  # spill files per counter, by a hash's top four bits: the count reads one at a time
_KEY = itemgetter(slice(0, KEY_CHARS))
_TWO = itemgetter(slice(0, 2))
SPILL_PREFIX = "llava-lf-inspect-"  # then random characters (tempfile.mkdtemp)
_spill_folder: ContextVar[Path | None] = ContextVar("spill_folder", default=None)


@contextmanager
def spill_folder() -> Iterator[Path]:
    """A temporary folder for spilled hashes, removed afterwards. The run holds a lock in it for the scan's
    life (`owner_lock`), which the OS drops when the run's processes end: folders whose lock can be taken
    were left by runs killed before their end, and are removed first, so `kill -9` does not fill the
    temporary folder."""
    root = Path(tempfile.gettempdir())
    remove_abandoned_folders(root, SPILL_PREFIX)
    with held_folder(root, SPILL_PREFIX) as folder:
        yield folder


@contextmanager
def spilling_to(folder: Path) -> Iterator[None]:
    """Counters created or flushed inside write their hashes under `folder` past `SPILL_AT` (memory stays flat)."""
    token = _spill_folder.set(folder)
    try:
        yield
    finally:
        _spill_folder.reset(token)


class RepeatCounter:
    """Exact repeat counts through hashes, the words of the frequent texts kept by a `LossyCounter`.

    Texts are gathered and counted `FLUSH` at a time with C-level `map`s and numpy (no Python code per
    text); only texts seen before reach the `LossyCounter` (`_seen_again`).
    Their hashes stay in memory up to `SPILL_AT`, then go to `BUCKETS` files in the spill folder (split by
    the top bits, so the final count sorts one sixteenth at a time). With `openings`, the first two words
    of each text are counted exactly too (as written, one entry per distinct pair; lower-cased and
    trimmed at the end by `opening_counts`).
    """

    def __init__(self, capacity: int = CAPACITY, openings: bool = False):
        self._hashes = array("q")
        self._pending: list[str] = []
        self._texts = LossyCounter(capacity)
        self._openings: Counter[str] | None = Counter() if openings else None
        self._spilled: list[str] = []  # file prefixes holding hashes written out (merged counters' too)
        self._spilled_count = 0
        self._seen_slots: np.ndarray | None = None  # a bit per hash slot: set once a text with that slot came

    def update(self, texts: list[str]) -> None:
        self._pending += texts
        if len(self._pending) >= FLUSH:
            self._flush()

    def mark_seen(self, texts: list[str]) -> None:
        """Set the seen-slot bits of `texts` without counting them: a scan that starts after them then keeps
        the words of their later repeats as one pass would (`split_scan` primes the second part's counters)."""
        if not texts:
            return
        hashes = np.fromiter(map(hash, map(_KEY, texts)), dtype=np.int64, count=len(texts))
        _set_slots(self._slots(), np.sort(np.concatenate(_slots_of(hashes))))

    def _slots(self) -> np.ndarray:
        if self._seen_slots is None:
            self._seen_slots = np.zeros(SEEN_SLOTS >> 3, dtype=np.uint8)
        return self._seen_slots

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        # Texts are compared on their first KEY_CHARS characters, so memory is bounded per text too
        # (a ShareGPT answer runs to kilobytes); slicing a shorter string returns it as it is.
        keys = list(map(_KEY, pending))
        hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
        self._hashes.frombytes(hashes.tobytes())
        self._texts.update(_seen_again(keys, hashes, self._slots()))
        if self._openings is not None:  # " ".join(text.split(None, 2)[:2]) for each text
            _count_elements(self._openings, map(" ".join, map(_TWO, map(str.split, pending, repeat(None), repeat(2)))))
        if len(self._hashes) >= SPILL_AT and (folder := _spill_folder.get()) is not None:
            self._spill(folder)

    def _spill(self, folder: Path) -> None:
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        buckets = _bucket_of(hashes)
        prefix = str(folder / f"repeats-{uuid.uuid4().hex}-")
        for bucket in range(BUCKETS):
            with open(f"{prefix}{bucket}", "wb") as handle:
                hashes[buckets == bucket].tofile(handle)
        self._spilled.append(prefix)
        self._spilled_count += len(hashes)
        del hashes, buckets  # the view must go before the array is replaced
        self._hashes = array("q")

    def settle(self) -> None:
        """Ready to be sent to another process and merged there: everything counted, the held hashes written
        to the spill folder (when one is set), the seen-slot bits (only this process's filter) freed."""
        self._flush()
        if self._hashes and (folder := _spill_folder.get()) is not None:
            self._spill(folder)
        self._seen_slots = None

    def merge(self, other: RepeatCounter) -> None:
        """Add the texts `other` counted (hashes are comparable: the processes share the hash seed)."""
        self._flush()
        other._flush()
        self._hashes.extend(other._hashes)
        self._spilled += other._spilled
        self._spilled_count += other._spilled_count
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
        return len(self._hashes) + self._spilled_count

    def most_repeated(self, n: int) -> tuple[int, int, list[tuple[str, int]]]:
        """(distinct texts, texts seen twice or more, the n seen most often (twice or more) with exact counts).

        Spilled hashes are counted one bucket at a time (a sixteenth of them in memory at once); equal
        hashes always share a bucket.
        """
        self._flush()
        held = np.frombuffer(self._hashes, dtype=np.int64) if self._hashes else np.zeros(0, dtype=np.int64)
        distinct = repeated = 0
        top: list[tuple[int, int]] = []  # (count, hash) of the most repeated so far
        if not self._spilled:
            parts = [held]
        else:
            held_buckets = _bucket_of(held)
            parts = (np.concatenate([held[held_buckets == bucket], *(np.fromfile(f"{prefix}{bucket}", dtype=np.int64)
                                                                     for prefix in self._spilled)])
                     for bucket in range(BUCKETS))
        for hashes in parts:
            part_distinct, part_repeated, part_top = _runs(hashes, n)
            distinct, repeated = distinct + part_distinct, repeated + part_repeated
            top = sorted(top + part_top, key=lambda item: -item[0])[:n]
        texts = self._texts.texts()
        kept = [(texts.get(key, "(text not kept: too rare to hold in memory)"), count) for count, key in top if count > 1]
        return distinct, repeated, sorted(kept, key=lambda item: (-item[1], item[0]))


def _bucket_of(hashes: np.ndarray) -> np.ndarray:
    """Each hash's spill file: its top four bits, so equal hashes always share one."""
    return (hashes >> 60) & (BUCKETS - 1)


def _seen_again(keys: list[str], hashes: np.ndarray, seen_slots: np.ndarray) -> list[str]:
    """The keys seen before: earlier in this flush (the same hash), or, as far as the bit array tells, in an
    earlier one (both of the hash's slots set: a Bloom filter, wrong for about 1% of new texts once 3.6M
    texts are in); the slots of all are set. Only these go to the `LossyCounter`: a text seen once never
    needs its words kept, and most texts are seen once."""
    slots = _slots_of(hashes)
    earlier = np.logical_and.reduce([(seen_slots[part >> 3] & (1 << (part & 7)).astype(np.uint8)) != 0
                                     for part in slots])
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    again = np.zeros(len(hashes), dtype=bool)
    again[order[1:]] = ordered[1:] == ordered[:-1]
    _set_slots(seen_slots, np.sort(np.concatenate(slots)))
    return [keys[position] for position in np.flatnonzero(earlier | again).tolist()]


def _slots_of(hashes: np.ndarray) -> list[np.ndarray]:
    """The bit array's slots of each hash: two, from different bits of it."""
    return [hashes & (SEEN_SLOTS - 1), (hashes >> 32) & (SEEN_SLOTS - 1)]


def _set_slots(seen_slots: np.ndarray, ordered: np.ndarray) -> None:
    """Set the bits of the slots `ordered` (sorted): the bits that fall in one byte are ORed together first,
    so each byte is assigned once."""
    if not len(ordered):
        return
    byte = ordered >> 3
    starts = np.flatnonzero(np.concatenate(([True], byte[1:] != byte[:-1])))
    seen_slots[byte[starts]] |= np.bitwise_or.reduceat((1 << (ordered & 7)).astype(np.uint8), starts)


def _runs(hashes, n: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(distinct values, values seen twice or more, the n most frequent as (count, value)), sorting in place."""
    if not len(hashes):
        return 0, 0, []
    hashes.sort()
    starts = np.flatnonzero(hashes[1:] != hashes[:-1]) + 1
    bounds = np.concatenate(([0], starts, [len(hashes)]))
    counts, firsts = np.diff(bounds), hashes[bounds[:-1]]
    best = np.argsort(-counts, kind="stable")[:n]
    return len(counts), int((counts > 1).sum()), list(zip(counts[best].tolist(), firsts[best].tolist()))
