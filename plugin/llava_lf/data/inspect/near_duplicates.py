"""Near-duplicate images: a 64-bit perceptual hash (DCT, `imagehash.phash`) per image, grouped by distance.

Hashing decodes each image (JPEGs at a reduced scale through Pillow's draft mode: the hash looks at 32x32
pixels anyway), in worker processes. Pairs within `max_distance` bits are found without comparing every
pair: split the hash into max_distance + 1 bands; two hashes that close agree exactly on at least one
band (pigeonhole), so only hashes sharing a band are compared.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

DEFAULT_MAX_DISTANCE = 4  # bits of 64 that may differ: resized, re-encoded or lightly edited copies
_CHUNK = 64


@dataclass(frozen=True)
class NearDuplicateGroup:
    images: tuple[str, ...]  # as the records name them, sorted
    max_distance: int  # the largest distance between a member and the group's first (0: identical hashes)


def phash(path: str) -> int | None:
    """The image's 64-bit perceptual hash, or None when it cannot be decoded."""
    import imagehash
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))  # JPEG: decode at 1/2..1/8 scale, enough for a 32x32 DCT
            return int(str(imagehash.phash(image)), 16)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None


def _hash_chunk(paths: list[str]) -> list[int | None]:
    return [phash(path) for path in paths]


def hash_images(paths: list[str], workers: int | None = None) -> Iterator[int | None]:
    """`phash` of each path, in order, in worker processes."""
    chunks = [paths[start:start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    if len(chunks) <= 1 or workers == 1:
        for chunk in chunks:
            yield from _hash_chunk(chunk)
        return
    context = multiprocessing.get_context("spawn")  # the parent may hold tokenizer threads
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=context) as pool:
        for result in pool.map(_hash_chunk, chunks):
            yield from result


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of max_distance + 1 bands covering the 64 bits."""
    count = max_distance + 1
    edges = [round(64 * i / count) for i in range(count + 1)]
    return [(low, (1 << (high - low)) - 1) for low, high in zip(edges, edges[1:])]


def group_hashes(hashes: list[int], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[list[int]]:
    """Groups (indices into `hashes`) of items linked by distances <= max_distance, each with 2+ members."""
    import numpy as np

    parent = list(range(len(hashes)))

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    values = np.array(hashes, dtype=np.uint64)
    for shift, mask in _bands(max_distance):
        buckets: dict[int, list[int]] = defaultdict(list)
        for index, value in enumerate(hashes):
            buckets[(value >> shift) & mask].append(index)
        for members in buckets.values():
            if len(members) < 2:
                continue
            member_array = np.array(members)
            for position, index in enumerate(members[:-1]):
                others = member_array[position + 1:]
                close = others[np.bitwise_count(values[others] ^ values[index]) <= max_distance]
                for other in close.tolist():
                    parent[find(other)] = find(index)
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(hashes)):
        groups[find(index)].append(index)
    return [members for members in groups.values() if len(members) > 1]


def near_duplicates(paths: list[str], names: list[str], max_distance: int = DEFAULT_MAX_DISTANCE,
                    workers: int | None = None) -> tuple[int, list[NearDuplicateGroup]]:
    """(images hashed, groups largest first) for distinct image files `paths`, shown as `names`."""
    hashed, hashed_names = [], []
    for value, name in zip(hash_images(paths, workers), names):
        if value is not None:
            hashed.append(value)
            hashed_names.append(name)
    groups = []
    for members in group_hashes(hashed, max_distance):
        first = hashed[members[0]]
        distance = max(int(first ^ hashed[m]).bit_count() for m in members)
        groups.append(NearDuplicateGroup(tuple(sorted(hashed_names[m] for m in members)), distance))
    groups.sort(key=lambda group: (-len(group.images), group.images))
    return len(hashed), groups
