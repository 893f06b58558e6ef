"""The LLaVA conversation formats as LLaMA-Factory templates.

`llava_v1`: Vicuna v1 exactly as LLaVA-1.5 trains and evaluates with it:
    <s>{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>
`llava_plain`: stage-1 feature alignment: <s><image>{caption}\\n (the human text is discarded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamafactory.data.formatter import EmptyFormatter, StringFormatter
from llamafactory.data.mm_plugin import get_mm_plugin
from llamafactory.data.template import Template, register_template
from llamafactory.data.data_utils import Role

from .formats import IMAGE_TOKEN, VICUNA_V1_SYSTEM
from .mm_plugin import PLUGIN_NAME

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer



@dataclass
class PlainTemplate(Template):
    """Stage-1 format: each human turn is reduced to its image tokens; answers end with a newline."""

    def _encode(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None,
        tools: str | None,
    ) -> list[list[int]]:
        image_token = self.mm_plugin.image_token
        encoded = []
        for index, message in enumerate(messages):
            elements = list(self.format_prefix.apply()) if index == 0 else []  # apply() returns the shared slots
            if message["role"] == Role.USER:
                # After the mm plugin ran, the content holds the expanded image tokens: keep only those.
                elements += [image_token * message["content"].count(image_token)]
            elif message["role"] == Role.ASSISTANT:
                elements += self.format_assistant.apply(content=message["content"])
            else:
                raise ValueError(f"the llava_plain template takes user/assistant turns only, got {message['role']!r}")
            encoded.append(self._convert_elements_to_ids(tokenizer, elements))
        return encoded


def register_llava_v1() -> None:
    register_template(
        name="llava_v1",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_system=StringFormatter(slots=["{{content}} "]),
        format_user=StringFormatter(slots=["USER: {{content}} ASSISTANT:"]),
        format_assistant=StringFormatter(slots=[" {{content}}", {"eos_token"}]),
        default_system=VICUNA_V1_SYSTEM,
        mm_plugin=get_mm_plugin(name=PLUGIN_NAME, image_token=IMAGE_TOKEN),
    )


def register_llava_plain() -> None:
    register_template(
        name="llava_plain",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_assistant=StringFormatter(slots=["{{content}}\n"]),
        mm_plugin=get_mm_plugin(name=PLUGIN_NAME, image_token=IMAGE_TOKEN),
        template_class=PlainTemplate,
    )


TEMPLATES = {"llava_v1": register_llava_v1, "llava_plain": register_llava_plain}


# Imported before the host, this module is mid-import when the hook fires; register once it is complete.
from .registration import register_all as _register_all  # noqa: E402

_register_all()
