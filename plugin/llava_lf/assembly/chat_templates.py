"""The chat template an assembled checkpoint's processor carries, one per LLaVA-NeXT conversation format
(`llava/conversation.py`: `llava_v1`, `mistral_instruct`, `chatml_direct`, `llava_llama_3`), for inference with
`processor.apply_chat_template`. Like `llava_v1`'s they write no BOS (the tokenizer adds it) and put a single
image first in its turn, followed by a newline, as LLaVA's training did.
"""

from __future__ import annotations

from llava_lf.formats import _CONTENT_AS_TEXT, CHATML_DIRECT_SYSTEM, LLAMA_3_SYSTEM, LLAVA_V1_CHAT_TEMPLATE

from .spec import ChatFormat

# Tokens a format writes that must be single tokens of the vocabulary (added when the language model lacks them).
FORMAT_TOKENS: dict[str, tuple[str, ...]] = {
    "llava_v1": (), "mistral_instruct": (),
    "chatml_direct": ("<|im_start|>", "<|im_end|>"),
    "llama_3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
}


def _system(default: str) -> str:
    """Jinja that sets `system` to `default` or to a leading system message, which it removes."""
    quoted = default.replace("\\", "\\\\").replace("'", "\\'")
    return ("{%- set system = '" + quoted + "' -%}"
            "{%- if messages and messages[0]['role'] == 'system' -%}"
            "{%- if messages[0]['content'] is string -%}{%- set system = messages[0]['content'] -%}"
            "{%- else -%}{%- set system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
            " | map(attribute='text') | join('') -%}{%- endif -%}"
            "{%- set messages = messages[1:] -%}{%- endif -%}")


# LLAMA_2 style, system "", sep2 "</s>": `[INST] q [/INST] a </s>[INST] q2 [/INST]` (a space before [/INST] and
# before </s>); a system prompt goes inside the first [INST] as <<SYS>>.
MISTRAL_INSTRUCT = (
    _system("") + "{%- for message in messages -%}" + _CONTENT_AS_TEXT +
    "{%- if message['role'] == 'user' -%}"
    "{%- if loop.first and system -%}{%- set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + text -%}{%- endif -%}"
    "{{- '[INST] ' + text + ' [/INST]' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- ' ' + text + ' ' + eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)

# MPT style: every part ends in <|im_end|> with no newline after it; the system prompt is always there.
CHATML_DIRECT = (
    _system(CHATML_DIRECT_SYSTEM) + "{{- '<|im_start|>system\\n' + system + '<|im_end|>' -}}"
    "{%- for message in messages -%}" + _CONTENT_AS_TEXT +
    "{%- if message['role'] in ('user', 'assistant') -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + text + '<|im_end|>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Meta-Llama-3-Instruct's template (contents trimmed) with LLaVA's system prompt always present; the tokenizer
# adds <|begin_of_text|>.
LLAMA_3 = (
    _system(LLAMA_3_SYSTEM) + "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system + '<|eot_id|>' -}}"
    "{%- for message in messages -%}" + _CONTENT_AS_TEXT +
    "{%- if message['role'] in ('user', 'assistant') -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (text | trim) + '<|eot_id|>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

CHAT_TEMPLATES: dict[str, str] = {"llava_v1": LLAVA_V1_CHAT_TEMPLATE, "mistral_instruct": MISTRAL_INSTRUCT,
                                  "chatml_direct": CHATML_DIRECT, "llama_3": LLAMA_3}


def chat_template(chat_format: ChatFormat) -> str:
    return CHAT_TEMPLATES[chat_format]


def infer_chat_format(vocabulary, model_type: str | None) -> ChatFormat:
    """The format an original LLaVA-NeXT checkpoint was trained with, as LLaVA's own scripts pick it by name:
    ChatML tokens -> chatml_direct (34B), Llama-3 headers -> llama_3, a Mistral decoder -> mistral_instruct."""
    if "<|im_start|>" in vocabulary:
        return "chatml_direct"
    if "<|start_header_id|>" in vocabulary:
        return "llama_3"
    return "mistral_instruct" if model_type in ("mistral", "llava_mistral") else "llava_v1"
