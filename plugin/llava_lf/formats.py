"""Conversation-format constants shared by the templates, the assembler and the converter (import-free)."""

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# The `llava_v1` template as a Jinja chat template, for the processor/tokenizer saved with a model, so
# `processor.apply_chat_template` renders what training saw. Content may be a string (with `<image>`
# already in it) or llava-hf style parts; each image part becomes `<image>\n` before the text.
LLAVA_V1_CHAT_TEMPLATE = (
    "{%- set system = '" + VICUNA_V1_SYSTEM.replace("'", "\\'") + "' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set system = messages[0]['content'] -%}"
    "{%- else -%}{%- set system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') -%}{%- endif -%}"
    "{%- set messages = messages[1:] -%}{%- endif -%}"
    "{{- bos_token -}}{%- if system -%}{{- system + ' ' -}}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set parts = namespace(text='') -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set parts.text = parts.text + '<image>\\n' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set parts.text = parts.text + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = parts.text -%}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + text + ' ASSISTANT:' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- ' ' + text + eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)
