"""Decode every image once, in worker processes, to find the ones training would choke on.

An image is opened (header only) to compare its pixel count with the limit before anything is
decoded, so a decompression bomb is refused without being inflated; then it is fully decoded, which
is what finds truncated files. Work goes out in small batches with a bounded number in flight, so
memory stays flat however long the file, and results come back in input order.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from .report import Problem

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold (about 0.25 GB as RGB)
_RECORDS_PER_TASK = 32  # records per task
_IN_FLIGHT_PER_WORKER = 4

T = TypeVar("T")
ImageFault = tuple[str, str]  # (reason, message)


def inspect_image(path: str, max_pixels: int) -> ImageFault | None:
    """None when the image decodes fully within the pixel limit, else why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return "image_too_large", f"{width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"
                image.load()
    except Image.DecompressionBombError as error:
        return "image_too_large", str(error)
    except UnidentifiedImageError:
        return "image_undecodable", "not an image format Pillow can read"
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error) or type(error).__name__
        return ("image_truncated" if "truncated" in message.lower() else "image_undecodable"), message
    return None


def _init_worker() -> None:
    from PIL import Image

    # Our own check (header size vs max_pixels, before decoding) decides; only in these worker processes.
    Image.MAX_IMAGE_PIXELS = None


def _inspect_batch(paths: list[list[str]], max_pixels: int) -> list[list[ImageFault | None]]:
    seen: dict[str, ImageFault | None] = {}
    results = []
    for record_paths in paths:
        for path in record_paths:
            if path not in seen:
                seen[path] = inspect_image(path, max_pixels)
        results.append([seen[path] for path in record_paths])
    return results


def fault_problem(fault: ImageFault, field: str, path: str) -> Problem:
    reason, message = fault
    fix = {
        "image_too_large": "downscale the image, or raise --max-pixels if it is genuine",
        "image_truncated": "re-download or re-extract the image (the file is cut short)",
    }.get(reason, "replace the file with a valid JPEG/PNG, or remove the record")
    return Problem(reason, field, f"{path!r}: {message}", fix)


class ImageVerifier:
    """Runs `inspect_image` over records' images in parallel, yielding records with their faults in order."""

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None):
        self.max_pixels = max_pixels
        self.workers = workers or os.cpu_count() or 1

    def verify(
        self, items: Iterable[T], paths_of: Callable[[T], list[str]]
    ) -> Iterator[tuple[T, list[ImageFault | None]]]:
        # spawn: the parent may hold tokenizer threads (cutoff counting), which fork would copy badly
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker) as pool:
            window: deque[tuple[list[T], Future]] = deque()
            batch: list[T] = []
            for item in items:
                batch.append(item)
                if len(batch) == _RECORDS_PER_TASK:
                    window.append((batch, pool.submit(_inspect_batch, [paths_of(i) for i in batch], self.max_pixels)))
                    batch = []
                    if len(window) >= self.workers * _IN_FLIGHT_PER_WORKER:
                        yield from _finished(window.popleft())
            if batch:
                window.append((batch, pool.submit(_inspect_batch, [paths_of(i) for i in batch], self.max_pixels)))
            while window:
                yield from _finished(window.popleft())


def _finished(entry: tuple[list[T], Future]) -> Iterator[tuple[T, list[ImageFault | None]]]:
    batch, future = entry
    yield from zip(batch, future.result())
