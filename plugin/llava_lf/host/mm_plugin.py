"""Image-token expansion for LLaVA that never opens an image during tokenisation.

A user turn with one image is first put in LLaVA's form, `<image>\\n{text}` (what LLaVA's own preprocessing
does, and what our converter writes), so a chat or API request that sends the image apart from the text,
or after it, is prompted exactly as the model was trained.

The host's `llava` plugin runs the full CLIP image processor on every sample just to learn that a
336 px image gives 576 tokens. The count depends only on the processor's configuration, so we compute
it from there; images are decoded once, in the collator (`get_mm_inputs`), where we also check that each
batch row holds whole image blocks and leave out the images of samples the template trimmed or dropped.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from llamafactory.data.data_utils import Role
from llamafactory.data.mm_plugin import LlavaPlugin
from llamafactory.extras.constants import IMAGE_PLACEHOLDER
from llamafactory.extras.logging import get_logger

from llava_lf.common.image_tokens import image_seqlen_from_config

from .truncation import complete_image_blocks
from .truncation_report import claim_and_summarise

if TYPE_CHECKING:
    import torch
    from llamafactory.data.mm_plugin import AudioInput, ImageInput, MMProcessor, VideoInput

PLUGIN_NAME = "llava_lf"
REPORT_RUN = "_report_run_pid"  # the training run whose report the first batch summarises; never pickled
SEQLEN = "_seqlen_memo"  # (processor, tokens per image), never pickled

logger = get_logger(f"llamafactory.{__name__}")  # the host's handler and format


class LlavaFastPlugin(LlavaPlugin):
    """The host's Llava plugin with a config-derived image-token count and whole-image batches."""

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
        messages = [{**message, "content": _image_first(message["content"])} if message["role"] == Role.USER
                    else message for message in messages]
        seqlen = self._image_seqlen(processor)
        if seqlen is None:  # e.g. shortest-edge resize without crop: the count needs the image itself
            return super().process_messages(messages, images, videos, audios, processor)
        expanded = self.image_token * seqlen
        return [{**message, "content": message["content"].replace(IMAGE_PLACEHOLDER, expanded)} for message in messages]

    def get_mm_inputs(
        self,
        images: list[ImageInput],
        videos: list[VideoInput],
        audios: list[AudioInput],
        imglens: list[int],
        vidlens: list[int],
        audlens: list[int],
        batch_ids: list[list[int]],
        processor: MMProcessor | None,
    ) -> dict[str, list[int] | torch.Tensor]:
        self._summarise_report()
        seqlen = self._image_seqlen(processor)
        if images and seqlen is not None:
            image_id = _image_token_id(processor, self.image_token)
            images, imglens = complete_image_blocks(images, imglens, batch_ids, image_id, seqlen)
        return super().get_mm_inputs(images, videos, audios, imglens, vidlens, audlens, batch_ids, processor)

    def bind_report_run(self, run_pid: int | None) -> None:
        """Called by our template's setup: the first batch of this run logs the trim/drop summary."""
        setattr(self, REPORT_RUN, run_pid)

    def _image_seqlen(self, processor: MMProcessor | None) -> int | None:
        if not self.expand_mm_tokens:
            return 1
        owner, seqlen = self.__dict__.get(SEQLEN) or (None, None)
        if owner is not processor:  # read once per processor: its attribute lookups are slow
            owner, seqlen = processor, image_seqlen_from_config(processor)
            self.__dict__[SEQLEN] = (owner, seqlen)
        return seqlen

    def _summarise_report(self) -> None:
        # Bound by our template's setup in the training process (and inherited by forked dataloader workers);
        # a spawned worker got a pickled copy without it, and its parent is the training process.
        run_pid = getattr(self, REPORT_RUN) if hasattr(self, REPORT_RUN) else os.getppid()
        if run_pid is None:
            return
        setattr(self, REPORT_RUN, None)  # once per process; the claim makes it once per run
        summary = claim_and_summarise(run_pid)
        if summary is not None:  # a warning when samples were touched, so it stands out in the log
            log = logger.warning if summary.counts else logger.info
            log(summary.log_line())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(REPORT_RUN, None)
        state.pop(SEQLEN, None)
        return state


def _image_first(content: str) -> str:
    """LLaVA's form of a turn holding one image: the image, a newline, the stripped text.

    A turn already in that form is left exactly as written (converted data, and the counts made from it).
    """
    if content.count(IMAGE_PLACEHOLDER) != 1 or content.startswith(IMAGE_PLACEHOLDER + "\n"):
        return content
    return IMAGE_PLACEHOLDER + "\n" + content.replace(IMAGE_PLACEHOLDER, "").strip()


def _image_token_id(processor: Any, image_token: str) -> int:
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    return processor.tokenizer.convert_tokens_to_ids(image_token)


PLUGINS = {PLUGIN_NAME: LlavaFastPlugin}

