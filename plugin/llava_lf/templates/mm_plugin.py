"""Image-token expansion for LLaVA that never decodes an image while tokenising: the count comes from the processor's
configuration (LLaVA-1.5) or, for a LLaVA-NeXT processor, from each image's size in its file header after the resize
the collator applies; images are decoded once, in the collator (docs/templates.md).

It also puts a user turn in LLaVA's form (`<image>\\n{text}`) and answers a chat whose `<image>` placeholders do not
match its images with what to change instead of a traceback (docs/recipe.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llamafactory.data.data_utils import Role
from llamafactory.data.mm_plugin import LlavaPlugin
from llamafactory.extras.constants import AUDIO_PLACEHOLDER, IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from llamafactory.extras.logging import get_logger

from llava_lf.common.image_tokens import NextGeometry, image_seqlen_from_config, next_geometry
from llava_lf.common.turn_fit import complete_image_blocks

from .fast_encode import run_text
from .image_sizes import complete_image_runs, header_size

if TYPE_CHECKING:
    import torch
    from llamafactory.data.mm_plugin import AudioInput, ImageInput, MMProcessor, VideoInput

PLUGIN_NAME = "llava_lf"
SEQLEN_MEMO_ATTR = "_seqlen_memo"  # (processor, tokens per image or NeXT geometry), never pickled
VALIDATED_ATTR = "_validated_processor"  # the processor `_validate_input` last passed, never pickled
GIVEN_SAMPLE_ATTR = "_given_sample"  # the last sample this process expanded (for the template's trim/drop record), never pickled
API_MODULE = "llamafactory.api.app"  # imported only by `llamafactory-cli api`

_PLACEHOLDER_START = os.path.commonprefix([IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, AUDIO_PLACEHOLDER])  # "<"
logger = get_logger(f"llamafactory.{__name__}")  # the host's handler and format


@dataclass(frozen=True)
class GivenSample:
    """A sample as the host gave it to `process_messages`, and the messages we returned for it."""

    messages: list[dict[str, str]]
    images: list[Any]
    returned: list[dict[str, str]]


def given_sample(plugin: Any, expanded_messages: list[dict[str, str]]) -> GivenSample | None:
    """The sample whose expansion is `expanded_messages` (the very list we returned), if this plugin made it."""
    given = getattr(plugin, "__dict__", {}).get(GIVEN_SAMPLE_ATTR)
    if given is None or given[2] is not expanded_messages:
        return None
    return GivenSample(messages=given[0], images=given[1], returned=given[2])


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
        if videos or audios or processor is None or processor is not self.__dict__.get(VALIDATED_ATTR):
            # The host's check of the inputs against the processor reads only the processor and this plugin's tokens,
            # and videos and audios: once per processor is enough for samples without either.
            self._validate_input(processor, images, videos, audios)
            if self.image_token is not None:  # without one, images would need the check each time
                self.__dict__[VALIDATED_ATTR] = processor
        given = messages
        if messages and messages[-1]["role"] == Role.USER:
            messages = _placeholders_for_chat(messages, len(images))
        seqlen = self._image_seqlen(processor)
        expanded = None
        if type(seqlen) is int and not videos and not audios:  # LLaVA-1.5: one pass, which also checks the count
            expanded, placed = _expanded(messages, run_text(self.image_token, seqlen))
            expanded = expanded if placed == len(images) else None
        if expanded is None:
            self._validate_messages(messages, images, videos, audios)  # the host's check and message
            messages = [{**message, "content": _image_first_in(message)} for message in messages]
            if isinstance(seqlen, NextGeometry):  # AnyRes: each image its own count, from its size
                counts = iter([seqlen.tokens(*header_size(image)) for image in images])
                expanded = [{**message, "content": _expand_each(message["content"], self.image_token, counts)}
                            for message in messages]
            elif seqlen is None:  # e.g. shortest-edge resize without crop: the count needs the image itself
                expanded = super().process_messages(messages, images, videos, audios, processor)
            else:
                run = run_text(self.image_token, seqlen)
                expanded = [{**message, "content": message["content"].replace(IMAGE_PLACEHOLDER, run)}
                            for message in messages]
        self.__dict__[GIVEN_SAMPLE_ATTR] = (given, images, expanded)  # a GivenSample only when asked for
        return expanded

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
        seqlen = self._image_seqlen(processor)
        if images and isinstance(seqlen, NextGeometry):
            image_id = _image_token_id(processor, self.image_token)
            counts = [seqlen.tokens(*header_size(image)) for image in images]
            images, imglens = complete_image_runs(images, imglens, batch_ids, image_id, counts)
        elif images and seqlen is not None:
            image_id = _image_token_id(processor, self.image_token)
            images, imglens = complete_image_blocks(images, imglens, batch_ids, image_id, seqlen)
        return super().get_mm_inputs(images, videos, audios, imglens, vidlens, audlens, batch_ids, processor)

    def _image_seqlen(self, processor: MMProcessor | None) -> int | NextGeometry | None:
        if not self.expand_mm_tokens:
            return 1
        owner, seqlen = self.__dict__.get(SEQLEN_MEMO_ATTR) or (None, None)
        if owner is not processor:  # read once per processor: its attribute lookups are slow
            owner, seqlen = processor, next_geometry(processor) or image_seqlen_from_config(processor)
            self.__dict__[SEQLEN_MEMO_ATTR] = (owner, seqlen)
        return seqlen

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(SEQLEN_MEMO_ATTR, None)
        state.pop(GIVEN_SAMPLE_ATTR, None)
        state.pop(VALIDATED_ATTR, None)
        return state


def _placeholders_for_chat(messages: list[dict[str, str]], n_images: int) -> list[dict[str, str]]:
    """A chat's messages with exactly one `<image>` per image: the API refuses a mismatch, a chat repairs it."""
    found = sum(message["content"].count(IMAGE_PLACEHOLDER) for message in messages)
    if found == n_images:
        return messages
    if API_MODULE in sys.modules:  # `llamafactory-cli api`: FastAPI answers an HTTPException with its status
        from fastapi import HTTPException

        # The API writes one placeholder per image part itself (its only way to give images): the user typed the rest.
        raise HTTPException(status_code=400, detail=placeholder_problem(found - n_images, n_images, api=True))
    problem = placeholder_problem(found, n_images)
    logger.warning(f"llava_lf: {problem}; answering as if it were not there.")
    return _reconciled(messages, n_images)


def placeholder_problem(found: int, n_images: int, api: bool = False) -> str:
    """What is wrong with a chat's `<image>` placeholders and how to give an image instead; `api`: `found` are the
    typed ones, beside the image parts of an API request."""
    if api:
        given = f"{n_images} image part{'s' if n_images != 1 else ''}" if n_images else "no image part"
        return (f"the text holds {found} typed {IMAGE_PLACEHOLDER} beside {given}: each image_url part places its "
                f"own image, so do not type it; send each image as an image_url part")
    given = f"{n_images} image{'s' if n_images != 1 else ''} given" if n_images else "no image given"
    return (f"the text holds {found} {IMAGE_PLACEHOLDER} but {given}: {IMAGE_PLACEHOLDER} is where a given image "
            f"goes, so do not type it; give the image instead (an image_url part in the API, the Image box in "
            f"webchat, --image or /image in `llava-lf chat`)")


def _reconciled(messages: list[dict[str, str]], n_images: int) -> list[dict[str, str]]:
    """Keep the first `n_images` placeholders in reading order, drop the others (or add the missing ones first)."""
    found = sum(message["content"].count(IMAGE_PLACEHOLDER) for message in messages)
    if found < n_images:  # as the engines do when there is none: all images lead the first turn
        first = messages[0]
        return [{**first, "content": IMAGE_PLACEHOLDER * (n_images - found) + first["content"]}, *messages[1:]]
    kept, repaired = 0, []
    for message in messages:
        parts = message["content"].split(IMAGE_PLACEHOLDER)
        if len(parts) == 1:
            repaired.append(message)
            continue
        content, dropped = parts[0], False
        for part in parts[1:]:
            dropped = dropped or kept >= n_images
            content += (IMAGE_PLACEHOLDER if kept < n_images else "") + part
            kept += 1
        repaired.append({**message, "content": content.strip() if dropped else content})
    return repaired


def _expand_each(content: str, image_token: str, counts: Any) -> str:
    """Each `<image>` in turn replaced by its own image's run of tokens (`counts` is shared across messages)."""
    if IMAGE_PLACEHOLDER not in content:
        return content
    parts = content.split(IMAGE_PLACEHOLDER)
    return parts[0] + "".join(image_token * next(counts) + part for part in parts[1:])


def _expanded(messages: list[dict[str, str]], run: str) -> tuple[list[dict[str, str]], int]:
    """Each message with every `<image>` widened to `run` (a user turn put image-first), and how many it held: what
    the host's `_validate_messages` compares with the images; -1 (check with the host) beside a video or audio one."""
    expanded, placed = [], 0
    for message in messages:
        content = message["content"]
        if _PLACEHOLDER_START in content:  # a text without it holds no placeholder: one scan instead of three
            if VIDEO_PLACEHOLDER in content or AUDIO_PLACEHOLDER in content:
                return [], -1
            count = content.count(IMAGE_PLACEHOLDER)
            if count:
                placed += count
                if message["role"] == Role.USER:
                    content = _image_first(content)
                content = content.replace(IMAGE_PLACEHOLDER, run)
        expanded.append({**message, "content": content})
    return expanded, placed


def _image_first_in(message: dict[str, str]) -> str:
    """A message's content, in LLaVA's image-first form if it is a user turn."""
    content = message["content"]
    return _image_first(content) if message["role"] == Role.USER and IMAGE_PLACEHOLDER in content else content


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

