"""How many tokens one image becomes, derived from the processor's configuration alone (import-free)."""

from __future__ import annotations

from typing import Any


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
