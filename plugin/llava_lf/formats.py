"""Conversation-format constants shared by the templates, the assembler and the converter (import-free)."""

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# LLaVA-NeXT's system prompts (`llava/conversation.py`: conv_chatml_direct, conv_llava_llama_3; conv_mistral_instruct
# has none) and the tokens `preprocess_llama3` labels wherever they stand.
CHATML_DIRECT_SYSTEM = "Answer the questions."
LLAMA_3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                  "that the user provides, and assist the user with a variety of tasks using natural language.")
LLAMA_3_UNMASKED = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "\n\n")

# Message content may be a string (with `<image>` in it) or llava-hf style parts (an image part is
# `<image>\n`). A user turn with one image is put in LLaVA's form, as the `llava_lf` mm plugin does in
# training: `<image>\n` and then the stripped text.
_CONTENT_AS_TEXT = (
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set parts = namespace(text='') -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set parts.text = parts.text + '<image>\\n' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set parts.text = parts.text + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = parts.text -%}{%- endif -%}"
    "{%- if message['role'] == 'user' and text.count('<image>') == 1 and not text.startswith('<image>\\n') -%}"
    "{%- set text = '<image>\\n' + (text.replace('<image>', '') | trim) -%}{%- endif -%}"
)


# The templates write no BOS: the tokenizer adds it, as llava-hf's do, so both the model-card usage
# `processor(text=processor.apply_chat_template(conv), images=...)` and `apply_chat_template(..., tokenize=True)`
# give the one BOS training gave (a template BOS plus the tokenizer's would give two).


def llava_v1_chat_template(system: str = VICUNA_V1_SYSTEM) -> str:
    """The `llava_v1` template as Jinja, for `apply_chat_template` on a saved tokenizer or processor."""
    return (
        "{%- set system = '" + system.replace("\\", "\\\\").replace("'", "\\'") + "' -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}{%- set system = messages[0]['content'] -%}"
        "{%- else -%}{%- set system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
        " | map(attribute='text') | join('') -%}{%- endif -%}"
        "{%- set messages = messages[1:] -%}{%- endif -%}"
        "{%- if system -%}{{- system + ' ' -}}{%- endif -%}"
        "{%- for message in messages -%}" + _CONTENT_AS_TEXT +
        "{%- if message['role'] == 'user' -%}{{- 'USER: ' + text + ' ASSISTANT:' -}}"
        "{%- elif message['role'] == 'assistant' -%}{{- ' ' + text + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    )


LLAVA_V1_CHAT_TEMPLATE = llava_v1_chat_template()

# Stage 1 (`llava_plain`): a user turn keeps only its images; an answer is followed by a newline.
LLAVA_PLAIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}" + _CONTENT_AS_TEXT +
    "{%- if message['role'] == 'user' -%}{{- '<image>' * text.count('<image>') -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- text + '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)
