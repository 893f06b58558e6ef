"""LLaVA-NeXT's AnyRes arithmetic as transformers' llava_next applies it (pure: no imports, no pixels).

Grids are written `RxC` for a canvas of R tiles by C tiles, and a pinpoint is `[R * tile, C * tile]`, read as
(height, width) by transformers: the 1.6 list `[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]`
is the grids 1x2, 2x1, 2x2, 3x1, 1x3 of 336-px tiles. The original code reads the same pairs as (width, height);
the set is symmetric, only ties break the other way (LLaVA-NeXT facts, 1.8a). Token counts follow transformers'
processor and model (round to 7 places, then truncate), not the original's plain truncation.
"""

from __future__ import annotations

import re

NEXT_GRIDS: tuple[str, ...] = ("1x2", "2x1", "2x2", "3x1", "1x3")  # the released 1.6 list, in its order
_GRID = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")


def parse_grid(text: str) -> tuple[int, int]:
    """`"2x3"` -> (2, 3) rows and columns of tiles; ValueError naming the form otherwise."""
    match = _GRID.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"AnyRes grid {text!r}: write rows x columns of tiles, e.g. 1x2 or 2x2")
    return int(match.group(1)), int(match.group(2))


def grid_problems(grids: tuple[str, ...] | list, where: str) -> list[str]:
    """What `parse_grid` finds wrong with each grid, each line led by `where` (the file or option they came from)."""
    problems = []
    for grid in grids:
        try:
            parse_grid(grid)
        except ValueError as error:
            problems.append(f"{where}: {error}")
    return problems


def grid_pinpoints(grids: tuple[str, ...] | list[str], tile: int) -> list[list[int]]:
    """The `image_grid_pinpoints` of `grids` for a tower that takes `tile` x `tile` images."""
    return [[rows * tile, cols * tile] for rows, cols in map(parse_grid, grids)]


def select_best_resolution(height: int, width: int, pinpoints: list[list[int]]) -> tuple[int, int]:
    """The canvas (height, width) an image goes on: most of the image kept, then least canvas wasted, then the
    first in list order (transformers' `select_best_resolution`)."""
    best, best_kept, best_waste = None, 0, float("inf")
    for can_h, can_w in pinpoints:
        scale = min(can_w / width, can_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = can_w * can_h - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (can_h, can_w), kept, waste
    if best is None:
        raise ValueError(f"no AnyRes canvas for a {width}x{height} image (pinpoints {pinpoints})")
    return best


def unpadded_grid(height: int, width: int, rows: int, cols: int) -> tuple[int, int]:
    """Feature rows and columns of a `rows` x `cols` mosaic left after removing the padding of a W x H image."""
    if width / height > cols / rows:
        kept = int(round(height * (cols / width), 7))
        rows -= 2 * ((rows - kept) // 2)
    else:
        kept = int(round(width * (rows / height), 7))
        cols -= 2 * ((cols - kept) // 2)
    return rows, cols


def image_token_count(height: int, width: int, pinpoints: list[list[int]], tile: int, patch: int) -> int:
    """Tokens one `width` x `height` image becomes (CLS dropped): the base tile's features, then every kept row
    of the mosaic plus its `image_newline`."""
    side = tile // patch
    can_h, can_w = select_best_resolution(height, width, pinpoints)
    rows, cols = unpadded_grid(height, width, side * (can_h // tile), side * (can_w // tile))
    return side * side + rows * (cols + 1)
