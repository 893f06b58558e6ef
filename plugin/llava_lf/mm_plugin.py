"""Image-token expansion for LLaVA that never opens an image during tokenisation.

The host's `llava` plugin runs the full CLIP image processor on every sample just to learn that a
336 px image gives 576 tokens. The count depends only on the processor's configuration, so we compute
it from there; images are decoded once, in the collator (`get_mm_inputs`, inherited from the host).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llamafactory.data.mm_plugin import LlavaPlugin
from llamafactory.extras.constants import IMAGE_PLACEHOLDER

if TYPE_CHECKING:
    from llamafactory.data.mm_plugin import AudioInput, ImageInput, MMProcessor, VideoInput

PLUGIN_NAME = "llava_lf"


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
        return _height_width(getattr(image_processor, "size", None))
    return None


def image_seqlen_from_config(processor: MMProcessor) -> int | None:
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


class LlavaFastPlugin(LlavaPlugin):
    """The host's Llava plugin with a config-derived image-token count."""

    def process_messages(
        self,
        messages: list[dict[str, str]],
        images: list[ImageInput],
        videos: list[VideoInput],
        audios: list[AudioInput],
        processor: MMProcessor | None,
    ) -> list[dict[str, str]]:
        self._validate_input(processor, images, videos, audios)
        self._validate_messages(messages, images, videos, audios)
        seqlen = image_seqlen_from_config(processor) if self.expand_mm_tokens else 1
        if seqlen is None:  # e.g. shortest-edge resize without crop: the count needs the image itself
            return super().process_messages(messages, images, videos, audios, processor)
        expanded = self.image_token * seqlen
        return [{**message, "content": message["content"].replace(IMAGE_PLACEHOLDER, expanded)} for message in messages]


PLUGINS = {PLUGIN_NAME: LlavaFastPlugin}
