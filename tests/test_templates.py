"""Our templates render the LLaVA formats exactly, through the host's own encoding path."""

from __future__ import annotations

import pytest

from llava_lf.formats import VICUNA_V1_SYSTEM


@pytest.fixture(scope="module")
def encode(tiny_llava):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava)
    tokenizer = processor.tokenizer

    def run(template_name: str, messages: list[dict[str, str]], images: list[str]):
        template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name))
        expanded = template.mm_plugin.process_messages(messages, images, [], [], processor)
        pairs = template.encode_multiturn(tokenizer, expanded)
        ids, labels = [], []
        for prompt, answer in pairs:
            ids += prompt + answer
            labels += [-100] * len(prompt) + answer
        return tokenizer, ids, labels

    return run


def test_llava_v1_renders_vicuna_v1(encode, demo_data):
    data, _ = demo_data
    image = str(next(data.image_dir.iterdir()))
    messages = [
        {"role": "user", "content": "<image>\nWhat color is the circle?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "How many shapes are there?"},
        {"role": "assistant", "content": "2"},
    ]
    tokenizer, ids, labels = encode("llava_v1", messages, [image])
    image_tokens = "<image>" * 9  # 48 px / 16 px patches, CLS dropped
    assert tokenizer.decode(ids) == (
        f"<s>{VICUNA_V1_SYSTEM} USER: {image_tokens}\nWhat color is the circle? ASSISTANT: red</s>"
        "USER: How many shapes are there? ASSISTANT: 2</s>"
    )
    assert tokenizer.decode([i for i, label in zip(ids, labels) if label != -100]) == " red</s> 2</s>"


def test_llava_plain_keeps_only_the_image_and_caption(encode, demo_data):
    data, _ = demo_data
    image = str(next(data.image_dir.iterdir()))
    messages = [{"role": "user", "content": "Describe the image briefly.\n<image>"},
                {"role": "assistant", "content": "A red circle."}]
    for _ in range(2):  # a second sample must render the same (no state leaks between samples)
        tokenizer, ids, labels = encode("llava_plain", messages, [image])
        assert tokenizer.decode(ids) == "<s>" + "<image>" * 9 + "A red circle.\n"
        assert tokenizer.decode([i for i, label in zip(ids, labels) if label != -100]) == "A red circle.\n"
