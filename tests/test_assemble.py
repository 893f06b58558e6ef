"""The assembled checkpoint is a standard llava-hf one whose parts equal their sources."""

from __future__ import annotations

import json

import pytest
import torch


def test_assembled_parts_match_their_sources(tiny_llava, tiny_parts):
    from transformers import AutoModelForCausalLM, AutoProcessor, CLIPVisionModel, LlavaForConditionalGeneration

    clip_dir, llama_dir = tiny_parts
    llava = LlavaForConditionalGeneration.from_pretrained(tiny_llava).eval()
    llama = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    clip = CLIPVisionModel.from_pretrained(clip_dir).eval()

    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        expected = llama(input_ids=ids).logits
        got = llava(input_ids=ids).logits[..., : expected.shape[-1]]
        torch.testing.assert_close(got, expected)
        pixels = torch.randn(2, 3, 48, 48)
        torch.testing.assert_close(llava.model.vision_tower(pixels).last_hidden_state, clip(pixels).last_hidden_state)

    processor = AutoProcessor.from_pretrained(tiny_llava)
    config = json.loads((tiny_llava / "config.json").read_text())
    assert config["image_token_index"] == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert config["text_config"]["vocab_size"] % 64 == 0
    assert processor.tokenizer.pad_token is not None


def test_chat_template_renders_the_training_format(tiny_llava):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    rendered = processor.apply_chat_template(conversation, tokenize=False)
    assert rendered.startswith("<s>A chat between a curious user")
    assert rendered.endswith("questions. USER: <image>\nWhat color? ASSISTANT: red</s>")


def test_not_a_vision_checkpoint_is_a_clear_error(tmp_path, tiny_parts):
    from llava_lf.assemble import AssemblyError, AssemblySpec, assemble

    _, llama_dir = tiny_parts
    with pytest.raises(AssemblyError, match="is not a CLIP vision model"):
        assemble(AssemblySpec(vision=llama_dir, llm=llama_dir, out=tmp_path / "x"))
    with pytest.raises(AssemblyError, match="no config.json"):
        assemble(AssemblySpec(vision=tmp_path, llm=llama_dir, out=tmp_path / "x"))
