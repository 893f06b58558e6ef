"""Remember which record ids were seen in 12-24 bytes per id (a 64-bit fingerprint in one flat table) instead of a
Python string in a set; the memory and the collision odds are in docs/data.md.
"""

from __future__ import annotations

from array import array

_MASK64 = (1 << 64) - 1


class SeenIds:
    def __init__(self, capacity: int = 1 << 16):
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, record_id: str) -> bool:
        """Remember `record_id`; False when it was seen before."""
        fingerprint = (hash(record_id) & _MASK64) or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        slot = fingerprint & mask
        while (held := slots[slot]) != 0:
            if held == fingerprint:
                return False
            slot = (slot + 1) & mask
        slots[slot] = fingerprint
        self._count += 1
        if 3 * self._count > 2 * len(slots):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        slots, mask = self._slots, self._mask
        for fingerprint in old:
            if fingerprint:
                slot = fingerprint & mask
                while slots[slot]:
                    slot = (slot + 1) & mask
                slots[slot] = fingerprint
