"""How many tokens one image becomes, derived from the processor's configuration alone (import-free): a fixed count
for LLaVA-1.5, and for LLaVA-NeXT (AnyRes) a count from the image's size, as transformers' processor gives it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .anyres import select_best_resolution, unpadded_grid


def _height_width(size: Any) -> tuple[int, int] | None:
    """Read a fixed (height, width) from a processor size entry, dict or SizeDict alike."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    height, width = get("height"), get("width")
    if height and width:
        return int(height), int(width)
    return None


def processed_image_size(image_processor: Any) -> tuple[int, int] | None:
    """The pixel size the image processor outputs for any input, or None when it depends on the input."""
    if getattr(image_processor, "do_center_crop", False):
        return _height_width(getattr(image_processor, "crop_size", None))
    if getattr(image_processor, "do_resize", False):
        size = getattr(image_processor, "size", None)
        fixed = _height_width(size)
        if fixed is None and getattr(image_processor, "do_pad", False) and _is_llava_image_processor(image_processor):
            # LLaVA-1.5's expand2square: padded to a square first, so a shortest-edge resize gives a square.
            edge = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
            return (int(edge), int(edge)) if edge else None
        return fixed
    return None


def _is_llava_image_processor(image_processor: Any) -> bool:
    return type(image_processor).__name__ in ("LlavaImageProcessor", "LlavaImageProcessorFast")


def image_seqlen_from_config(processor: Any) -> int | None:
    """Tokens one image becomes, as LlavaProcessor computes it; None when the config does not fix it."""
    hw = processed_image_size(getattr(processor, "image_processor", None))
    patch_size = getattr(processor, "patch_size", None)
    if hw is None or not patch_size:
        return None
    height, width = hw
    seqlen = (height // patch_size) * (width // patch_size) + (processor.num_additional_image_tokens or 0)
    if processor.vision_feature_select_strategy == "default":
        seqlen -= 1
    return seqlen


# The host's default image_max_pixels / image_min_pixels (its processor attributes, set from the model arguments).
HOST_MAX_PIXELS, HOST_MIN_PIXELS = 768 * 768, 32 * 32


@dataclass(frozen=True)
class NextGeometry:
    """What a LLaVA-NeXT (AnyRes) processor needs to count one image's tokens from its size alone."""

    pinpoints: tuple[tuple[int, int], ...]  # (height, width) canvases, in the processor's order
    tile: tuple[int, int]  # (height, width) of a tile (the processed crop)
    patch: int
    base_extra: int  # num_additional_image_tokens, less the CLS the "default" strategy drops
    max_pixels: int
    min_pixels: int

    def tokens(self, width: int, height: int) -> int:
        """Tokens of an image whose file is `width` x `height`, after the host's resize (as its collator feeds it)."""
        width, height = host_resized_size(width, height, self.max_pixels, self.min_pixels)
        return self.tokens_at(width, height)

    def tokens_at(self, width: int, height: int) -> int:
        """Tokens of an image the processor receives at `width` x `height` (transformers' count, round-7 unpad)."""
        tile_h, tile_w = self.tile
        can_h, can_w = select_best_resolution(height, width, [list(pair) for pair in self.pinpoints])
        side_h, side_w = tile_h // self.patch, tile_w // self.patch
        rows, cols = unpadded_grid(height, width, side_h * (can_h // tile_h), side_w * (can_w // tile_w))
        return side_h * side_w + self.base_extra + rows * (cols + 1)


def host_resized_size(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """The size the host's `_preprocess_image` gives a `width` x `height` image: scaled by sqrt(limit / area) and
    truncated, down above `max_pixels`, then up below `min_pixels`."""
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    return width, height


def next_geometry(processor: Any) -> NextGeometry | None:
    """The AnyRes geometry of a LLaVA-NeXT processor (its image processor has `image_grid_pinpoints`), else None."""
    image_processor = getattr(processor, "image_processor", None)
    pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
    patch = getattr(processor, "patch_size", None)
    if not pinpoints or not patch:
        return None
    tile = _height_width(getattr(image_processor, "crop_size", None)) or _height_width(getattr(image_processor, "size", None))
    if tile is None:
        return None
    extra = (getattr(processor, "num_additional_image_tokens", 0) or 0)
    extra -= 1 if getattr(processor, "vision_feature_select_strategy", None) == "default" else 0
    return NextGeometry(pinpoints=tuple((int(h), int(w)) for h, w in pinpoints), tile=tile, patch=int(patch),
                        base_extra=extra, max_pixels=int(getattr(processor, "image_max_pixels", HOST_MAX_PIXELS)),
                        min_pixels=int(getattr(processor, "image_min_pixels", HOST_MIN_PIXELS)))
