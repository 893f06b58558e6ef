"""Which 64-bit hashes were seen: 8 bytes each, checked and added a whole batch at a time.

The card's duplicate checks (record ids, record contents, image paths) remember one hash per item, as
any exact check must. They live in one sorted numpy array, with the newest in a small Python set that is
merged into the array when it grows; a batch of new hashes is checked against both with two C-level
calls. Two different items collide with probability about n^2 / 2^65 (1e-8 for mix665k), the same
rule as the converter's `ids.SeenIds`, whose `add` this class also offers.
"""

from __future__ import annotations

import numpy as np

RECENT = 1 << 16  # hashes held in the set before they are merged into the sorted array


class SeenHashes:
    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.int64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, text: str) -> bool:
        """Remember `text`; False when it was seen before (`ids.SeenIds.add`)."""
        return self.add_hash(hash(text))

    def add_hash(self, key: int) -> bool:
        if key in self._recent:
            return False
        held = self._sorted
        if len(held) and (at := int(held.searchsorted(key))) < len(held) and held[at] == key:
            return False
        self._recent.add(key)
        if len(self._recent) > RECENT:
            self._merge()
        return True

    def add_all_new(self, keys: list[int]) -> bool:
        """Add every key and return True when none was seen before (nor repeats within `keys`); else add
        nothing and return False, so the caller can go through them one by one."""
        if len(set(keys)) != len(keys) or not self._recent.isdisjoint(keys):
            return False
        if len(self._sorted):
            probe = np.array(keys, dtype=np.int64)
            probe.sort()  # numpy's search then starts each key where the last one ended: fewer cache misses
            if self._in_sorted(probe).any():
                return False
        self._recent.update(keys)
        if len(self._recent) > RECENT:
            self._merge()
        return True

    def add_each(self, keys: list[int]) -> list[int]:
        """Add every key; the positions in `keys` of those seen before (earlier in `keys` included)."""
        if self.add_all_new(keys):
            return []
        return [position for position, key in enumerate(keys) if not self.add_hash(key)]

    def _in_sorted(self, keys: np.ndarray) -> np.ndarray:
        if not len(self._sorted):
            return np.zeros(len(keys), dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, keys), len(self._sorted) - 1)
        return self._sorted[at] == keys

    def _merge(self) -> None:
        recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
        recent.sort()
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)
        self._recent = set()
