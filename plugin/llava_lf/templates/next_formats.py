"""LLaVA-NeXT's conversation formats for its other backbones, token-exact to `llava/conversation.py` and to what its
training labels (docs/templates.md):

`llava_mistral_instruct`: <s>[INST] <image>\\n{q1} [/INST] {a1} </s>[INST] {q2} [/INST] {a2} </s>
`llava_chatml_direct` (Yi-34B): <|im_start|>system\\nAnswer the questions.<|im_end|><|im_start|>user\\n{q1}<|im_end|>
    <|im_start|>assistant\\n{a1}<|im_end|>...   (no newline after <|im_end|>)
`llava_llama_3`: <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{q1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n{a1}<|eot_id|>

They fit samples into cutoff_len at turn boundaries and count NeXT images as `llava_v1` does (LlavaTemplate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llamafactory.data.formatter import EmptyFormatter, StringFormatter
from llamafactory.data.template import Template, register_template

from llava_lf.formats import CHATML_DIRECT_SYSTEM, LLAMA_3_SYSTEM, LLAMA_3_UNMASKED

from .conversation import LlavaTemplate, llava_lf_plugin

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

    from llava_lf.common.turn_fit import Pairs

LLAMA_3_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"


@dataclass
class NextFormatTemplate(LlavaTemplate):
    """A NeXT format: the exported chat template is the host's rendering of its slots (not llava_v1's)."""

    def _get_jinja_template(self, tokenizer: PreTrainedTokenizer) -> str:
        return Template._get_jinja_template(self, tokenizer)


@dataclass
class MistralInstructTemplate(NextFormatTemplate):
    """LLAMA_2 style: a system prompt (none by default) goes inside the first [INST], wrapped in <<SYS>>."""

    def _encode(self, tokenizer: PreTrainedTokenizer, messages: list[dict[str, str]], system: str | None,
                tools: str | None) -> list[list[int]]:
        system = system or self.default_system
        if system and messages:
            wrapped = f"<<SYS>>\n{system}\n<</SYS>>\n\n"
            messages = [{**messages[0], "content": wrapped + messages[0]["content"]}, *messages[1:]]
        return super()._encode(tokenizer, messages, "", tools)


@dataclass
class Llama3Template(NextFormatTemplate):
    """Meta-Llama-3-Instruct's format with LLaVA's system prompt; contents are trimmed as its chat template does.

    Training labels as `preprocess_llama3`: each assistant message whole, its header included, and the header and
    end tokens (`LLAMA_3_UNMASKED`) wherever they stand, in system and user turns too.
    """

    def _encode(self, tokenizer: PreTrainedTokenizer, messages: list[dict[str, str]], system: str | None,
                tools: str | None) -> list[list[int]]:
        messages = [{**message, "content": message["content"].strip()} for message in messages]
        return super()._encode(tokenizer, messages, system.strip() if system else system, tools)

    def encode_multiturn(self, tokenizer: PreTrainedTokenizer, messages: list[dict[str, str]],
                         system: str | None = None, tools: str | None = None,
                         discarding_history_cot: bool = False) -> Pairs:
        pairs = super().encode_multiturn(tokenizer, messages, system, tools, discarding_history_cot)
        if len(pairs) == 1 and not pairs[0][1]:  # a dropped sample's stand-in: nothing to label
            return pairs
        header = self._remembered(tokenizer, LLAMA_3_ASSISTANT_HEADER)
        unmasked = {tokenizer.convert_tokens_to_ids(token) for token in LLAMA_3_UNMASKED}
        unmasked -= {None, tokenizer.unk_token_id}  # a name the vocabulary lacks labels nothing, as in the original
        return labelled_pairs(pairs, header, unmasked)


def labelled_pairs(pairs: Pairs, header: list[int], unmasked: set[int]) -> Pairs:
    """`pairs` re-cut so the host labels what `preprocess_llama3` labels: the assistant header moves from the end of
    each prompt to the start of its answer, and each unmasked token in a prompt becomes an answer of its own."""
    recut: Pairs = []
    for source, target in pairs:
        if header and source[-len(header):] == header:
            source, target = source[: -len(header)], header + target
        start = 0
        for index, token_id in enumerate(source):
            if token_id in unmasked:
                recut.append((source[start:index], [token_id]))
                start = index + 1
        recut.append((source[start:], target))
    return recut


def register_llava_mistral_instruct() -> None:
    register_template(
        name="llava_mistral_instruct",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_user=StringFormatter(slots=["[INST] {{content}} [/INST]"]),
        format_assistant=StringFormatter(slots=[" {{content}} ", {"eos_token"}]),
        mm_plugin=llava_lf_plugin(),
        template_class=MistralInstructTemplate,
    )


def register_llava_chatml_direct() -> None:
    register_template(
        name="llava_chatml_direct",
        format_system=StringFormatter(slots=["<|im_start|>system\n{{content}}<|im_end|>"]),
        format_user=StringFormatter(slots=["<|im_start|>user\n{{content}}<|im_end|><|im_start|>assistant\n"]),
        format_assistant=StringFormatter(slots=["{{content}}<|im_end|>"]),
        default_system=CHATML_DIRECT_SYSTEM,
        stop_words=["<|im_end|>"],
        replace_eos=True,
        mm_plugin=llava_lf_plugin(),
        template_class=NextFormatTemplate,
    )


def register_llava_llama_3() -> None:
    register_template(
        name="llava_llama_3",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_system=StringFormatter(slots=["<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>"]),
        format_user=StringFormatter(slots=["<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                                           + LLAMA_3_ASSISTANT_HEADER]),
        format_assistant=StringFormatter(slots=["{{content}}<|eot_id|>"]),
        default_system=LLAMA_3_SYSTEM,
        stop_words=["<|eot_id|>"],
        replace_eos=True,
        mm_plugin=llava_lf_plugin(),
        template_class=Llama3Template,
    )


TEMPLATES = {"llava_mistral_instruct": register_llava_mistral_instruct,
             "llava_chatml_direct": register_llava_chatml_direct, "llava_llama_3": register_llava_llama_3}
