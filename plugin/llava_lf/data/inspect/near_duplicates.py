"""Near-duplicate images: a 64-bit perceptual hash (`imagehash.phash`) per image, decoded in worker processes,
and groups of hashes within a few bits, found through bands so that not every pair is compared."""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

DEFAULT_MAX_DISTANCE = 4  # bits of 64 that may differ: resized, re-encoded or lightly edited copies


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


def hash_images(paths: list[str], workers: int | None = None) -> Iterator[int | None]:
    """`phash` of each path, in order, in worker processes."""
    if len(paths) <= 64 or workers == 1:
        yield from map(phash, paths)
        return
    context = multiprocessing.get_context("spawn")  # the parent may hold tokenizer and DuckDB threads
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=context) as pool:
        yield from pool.map(phash, paths, chunksize=64)


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of max_distance + 1 bands covering the 64 bits: two hashes within max_distance bits agree
    on at least one band (pigeonhole), so only hashes sharing a band are compared."""
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


def near_duplicates(images: list[tuple[str, str]], max_distance: int = DEFAULT_MAX_DISTANCE,
                    workers: int | None = None) -> dict:
    """The card's near-duplicate groups (largest first) among distinct image files, given as (file, name)."""
    hashed, names = [], []
    for value, (_, name) in zip(hash_images([file for file, _ in images], workers), images):
        if value is not None:
            hashed.append(value)
            names.append(name)
    # Each group's names sorted, and the largest distance between a member and its first (0: identical hashes).
    groups = [{"images": sorted(names[m] for m in members),
               "max_distance": max(int(hashed[members[0]] ^ hashed[m]).bit_count() for m in members)}
              for members in group_hashes(hashed, max_distance)]
    groups.sort(key=lambda group: (-len(group["images"]), group["images"]))
    return {"hashed": len(hashed), "max_distance": max_distance,
            "images_in_groups": sum(len(group["images"]) for group in groups), "groups": groups}
