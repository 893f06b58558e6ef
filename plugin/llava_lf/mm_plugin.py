"""Image-token expansion for LLaVA that never opens an image during tokenisation.

The host's `llava` plugin runs the full CLIP image processor on every sample just to learn that a
336 px image gives 576 tokens. The count depends only on the processor's configuration, so we compute
it from there; images are decoded once, in the collator (`get_mm_inputs`, inherited from the host).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamafactory.data.mm_plugin import LlavaPlugin
from llamafactory.extras.constants import IMAGE_PLACEHOLDER

from .image_tokens import image_seqlen_from_config

if TYPE_CHECKING:
    from llamafactory.data.mm_plugin import AudioInput, ImageInput, MMProcessor, VideoInput

PLUGIN_NAME = "llava_lf"


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


# Imported before the host, this module is mid-import when the hook fires; register once it is complete.
from .registration import register_all as _register_all  # noqa: E402

_register_all()
