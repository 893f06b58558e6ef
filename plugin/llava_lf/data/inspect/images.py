"""Image figures from file headers only: sizes, aspect ratios, formats, missing and unreadable files, reuse.

`PIL.Image.open` parses the header and stops (the pixels are decoded only by `load()`, which we never
call), so a 640x480 JPEG costs one open and a few small reads. Each distinct image is read once; how
often each is used is counted through hashes (`RepeatCounter`), so memory stays flat.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

from .accumulators import Distribution, RepeatCounter
from .seen import SeenHashes

EXAMPLES = 10  # missing/unreadable paths listed in the card
# Aspect ratio (width / height) buckets: LLaVA-1.5 pads every image to a square before the 336 px resize,
# so the further from 1, the more of the 576 image tokens show padding.
RATIO_EDGES = (0.5, 0.75, 0.95, 1.05, 1.34, 1.8, 2.5)
RATIO_LABELS = ("< 0.5", "0.5-0.75", "0.75-0.95", "square", "1.05-1.34", "1.34-1.8", "1.8-2.5", ">= 2.5")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    format: str


def read_header(path: str) -> Header | str:
    """The image's size and format from its header, or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                return Header(width, height, image.format or "unknown")
    except Image.DecompressionBombError as error:
        return f"over Pillow's decompression-bomb limit ({error})"
    except UnidentifiedImageError:
        return "not an image format Pillow can read"
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return str(error) or type(error).__name__


def ratio_bucket(width: int, height: int) -> str:
    ratio = width / height if height else float("inf")
    for edge, label in zip(RATIO_EDGES, RATIO_LABELS):
        if ratio < edge:
            return label
    return RATIO_LABELS[-1]


@dataclass
class ImageStats:
    headers: bool = True  # read each distinct image's header (off: existence only)
    uses: RepeatCounter = field(default_factory=RepeatCounter)
    width: Distribution = field(default_factory=Distribution)
    height: Distribution = field(default_factory=Distribution)
    ratios: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    missing_uses: int = 0  # record images the converter refused (missing, or outside the folder)
    missing: int = 0  # distinct such paths
    missing_examples: list[str] = field(default_factory=list)
    unreadable: int = 0
    unreadable_examples: list[tuple[str, str]] = field(default_factory=list)
    readable: list[tuple[str, str]] | None = None  # (file, name) of distinct readable images, for near duplicates
    _seen: SeenHashes = field(default_factory=SeenHashes)
    _seen_missing: SeenHashes = field(default_factory=SeenHashes)

    def add(self, written: str, full: str | None) -> None:
        """One use of an image by a record: `full` is its absolute path, or None when it was refused."""
        if full is None:
            self.missing_uses += 1
            if self._seen_missing.add(written):
                self.missing += 1
                if len(self.missing_examples) < EXAMPLES:
                    self.missing_examples.append(written)
            return
        self.uses.update([written])
        if not self._seen.add(full) or not self.headers:
            return
        header = read_header(full)
        if isinstance(header, str):
            self.unreadable += 1
            if len(self.unreadable_examples) < EXAMPLES:
                self.unreadable_examples.append((written, header))
            return
        self.width.add(header.width)
        self.height.add(header.height)
        self.ratios[ratio_bucket(header.width, header.height)] += 1
        self.formats[header.format] += 1
        if self.readable is not None:
            self.readable.append((full, written))

    def to_json(self, top: int) -> dict:
        distinct, reused, most_used = self.uses.most_repeated(top)
        width, height = self.width.summary(), self.height.summary()
        return {
            "uses": self.uses.total, "distinct": distinct, "used_by_several_records": reused, "headers_read": self.headers,
            "width": width.to_json() if width else None, "height": height.to_json() if height else None,
            "aspect_ratio": {label: self.ratios[label] for label in RATIO_LABELS if self.ratios[label]},
            "formats": dict(self.formats.most_common()),
            "missing": self.missing, "missing_uses": self.missing_uses, "missing_examples": self.missing_examples,
            "unreadable": self.unreadable,
            "unreadable_examples": [{"image": path, "why": why} for path, why in self.unreadable_examples],
            "most_used": [{"image": path, "records": count} for path, count in most_used],
        }
