"""Image sizes and formats from file headers only (`PIL.Image.open` parses the header; nothing is decoded), read
once per distinct image after the scan."""

from __future__ import annotations

import warnings

import duckdb

from .store import Inserts, Table

# Aspect ratio (width / height) buckets: LLaVA-1.5 pads every image to a square before the 336 px resize,
# so the further from 1, the more of the 576 image tokens show padding.
RATIO_EDGES = (0.5, 0.75, 0.95, 1.05, 1.34, 1.8, 2.5)
RATIO_LABELS = ("< 0.5", "0.5-0.75", "0.75-0.95", "square", "1.05-1.34", "1.34-1.8", "1.8-2.5", ">= 2.5")


def read_header(path: str) -> tuple:
    """(width, height, ratio bucket, format, None) from the image's header, or (None,) * 4 and why it cannot be
    read: the rest of its `headers` row."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                return width, height, ratio_bucket(width, height), image.format or "unknown", None
    except Image.DecompressionBombError as error:
        why = f"over Pillow's decompression-bomb limit ({error})"
    except UnidentifiedImageError:
        why = "not an image format Pillow can read"
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        why = str(error) or type(error).__name__
    return None, None, None, None, why


def ratio_bucket(width: int, height: int) -> str:
    ratio = width / height if height else float("inf")
    for edge, label in zip(RATIO_EDGES, RATIO_LABELS):
        if ratio < edge:
            return label
    return RATIO_LABELS[-1]


def add_headers(con: duckdb.DuckDBPyConnection) -> None:
    """A `headers` row per distinct image file the records use, in order of first use: each file is read once,
    after the scan, however many records use it."""
    files = con.execute("SELECT file, min(use) AS first, arg_min(written, use) FROM uses WHERE file IS NOT NULL "
                        "GROUP BY file ORDER BY first")
    with Inserts(con.cursor()) as inserts:  # its own cursor: `files` is still being fetched
        headers = Table(inserts, "headers")
        while rows := files.fetchmany(4096):
            for file, first, written in rows:
                headers.add((file, first, written, *read_header(file)))
        headers.flush()
