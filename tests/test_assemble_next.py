"""LLaVA-NeXT from parts (`llava-lf assemble --preset llava1_6_*`), from a LLaVA-1.5 stage 1 (`--llava`), and from an
original-layout NeXT checkpoint (`import-llava`), on the session's tiny CLIP (48-px tiles, 16-px patches) and LLaMA.

The expected layout is llava-hf/llava-v1.6-*-hf's as LLaVA-NeXT's facts give it: config keys, tensor names on disk,
`preprocessor_config.json` / `processor_config.json`, and the four conversation formats written out by hand."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch
from helpers.tiny_next import assemble_tiny_next

pytestmark = pytest.mark.timeout(300)

NEXT_PRESETS = ("llava1_6_vicuna_7b", "llava1_6_mistral_7b", "llava1_6_34b", "llava_next_llama3_8b")
HUB_PREFIXES = ("language_model.model.", "language_model.lm_head.weight", "multi_modal_projector.linear_1.",
                "multi_modal_projector.linear_2.", "vision_tower.vision_model.")
# (width, height): small, exactly one tile, wide 3:1, tall 1:3, odd sizes both ways, a 4:3 photo shape
SHAPES = ((20, 14), (48, 48), (150, 50), (50, 150), (37, 101), (97, 61), (161, 121), (49, 47))
QUESTION, ANSWER, FOLLOW_UP = "What is it?", "A circle.", "And the colour?"
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                 "detailed, and polite answers to the user's questions.")
LLAMA_3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                  "that the user provides, and assist the user with a variety of tasks using natural language.")
# LLaVA-NeXT's conversation.py formats for [user (image + QUESTION), assistant ANSWER, user FOLLOW_UP] and a
# generation prompt, written out from the rules (BOS is the tokenizer's).
EXPECTED_TEXT = {
    "llava1_6_vicuna_7b": f"{VICUNA_SYSTEM} USER: <image>\n{QUESTION} ASSISTANT: {ANSWER}</s>USER: {FOLLOW_UP} ASSISTANT:",
    "llava1_6_mistral_7b": f"[INST] <image>\n{QUESTION} [/INST] {ANSWER} </s>[INST] {FOLLOW_UP} [/INST]",
    "llava1_6_34b": (f"<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\n{QUESTION}<|im_end|>"
                     f"<|im_start|>assistant\n{ANSWER}<|im_end|><|im_start|>user\n{FOLLOW_UP}<|im_end|>"
                     "<|im_start|>assistant\n"),
    "llava_next_llama3_8b": (
        f"<|start_header_id|>system<|end_header_id|>\n\n{LLAMA_3_SYSTEM}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n<image>\n{QUESTION}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{FOLLOW_UP}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
FORMAT_TOKENS = {"llava1_6_34b": ("<|im_start|>", "<|im_end|>"),
                 "llava_next_llama3_8b": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}


def stored(directory: Path) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (dtype, shape) from the safetensors header on disk."""
    with (directory / "model.safetensors").open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return {key: (entry["dtype"], entry["shape"]) for key, entry in header.items() if key != "__metadata__"}


def picture(width: int, height: int, seed: int = 0):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8).numpy())


def conversation() -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
            {"role": "user", "content": [{"type": "text", "text": FOLLOW_UP}]}]


@pytest.fixture(scope="module")
def next_model(tmp_path_factory, tiny_parts) -> Path:
    """The README's NeXT command on the tiny parts, through `llava-lf`'s parser (in process)."""
    out = tmp_path_factory.mktemp("next") / "llava_next"
    result = assemble_tiny_next(tiny_parts, out)
    assert "AnyRes grids 1x2, 2x1, 2x2, 3x1, 1x3" in result.stdout
    return out


def test_text_logits_equal_the_language_models(next_model, tiny_parts):
    from transformers import AutoModelForCausalLM, LlavaNextForConditionalGeneration

    model, info = LlavaNextForConditionalGeneration.from_pretrained(next_model, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    source = AutoModelForCausalLM.from_pretrained(tiny_parts[1]).eval()
    ids = torch.randint(0, source.config.vocab_size, (2, 19), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = source(input_ids=ids).logits, model.eval()(input_ids=ids).logits
    assert got.shape[-1] % 64 == 0 and got.shape[-1] > expected.shape[-1]
    assert (got[..., : expected.shape[-1]] - expected).abs().max().item() <= 1e-5


def test_tower_features_equal_the_clips(next_model, tiny_parts):
    from transformers import AutoProcessor, CLIPVisionModel, LlavaNextForConditionalGeneration

    model = LlavaNextForConditionalGeneration.from_pretrained(next_model).eval()
    clip = CLIPVisionModel.from_pretrained(tiny_parts[0]).eval()
    pixels = AutoProcessor.from_pretrained(next_model)(text="<image>", images=picture(97, 61),
                                                       return_tensors="pt")["pixel_values"][0]
    assert pixels.shape[0] == 5  # base + a 2x2 canvas
    with torch.no_grad():
        expected = clip(pixel_values=pixels, output_hidden_states=True).hidden_states
        got = model.model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(got) == len(expected)
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(got, expected))


@pytest.mark.slow
def test_images_of_every_shape_give_the_anyres_count_and_run(next_model):
    """One image per prompt (transformers checks only batch totals, so per-image errors could cancel in a batch),
    then all in one padded batch: the checkpoint's own processor places exactly the AnyRes count of tokens (3 to 5
    tiles) and the model consumes them without a count mismatch."""
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    from llava_lf.common.anyres import image_token_count

    model = LlavaNextForConditionalGeneration.from_pretrained(next_model).eval()
    processor = AutoProcessor.from_pretrained(next_model)
    config = model.config
    tile, patch = config.vision_config.image_size, config.vision_config.patch_size
    prompt = processor.apply_chat_template(conversation()[:1], add_generation_prompt=True)
    tiles, counts = set(), []
    for index, (width, height) in enumerate(SHAPES):
        inputs = processor(text=prompt, images=picture(width, height, index), return_tensors="pt")
        count = int((inputs["input_ids"] == config.image_token_index).sum())
        assert count == image_token_count(height, width, config.image_grid_pinpoints, tile, patch), (width, height)
        tiles.add(int(inputs["pixel_values"].shape[1]))
        counts.append(count)
        with torch.no_grad():
            assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]
    assert tiles == {3, 4, 5} and len(set(counts)) >= 4
    batch = processor(text=[prompt] * len(SHAPES), images=[picture(w, h, i) for i, (w, h) in enumerate(SHAPES)],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


def test_image_newline_starts_as_the_originals(next_model):
    from safetensors.torch import load_file

    newline = load_file(next_model / "model.safetensors")["image_newline"]
    width = newline.shape[0]
    assert newline.shape == (json.loads((next_model / "config.json").read_text())["text_config"]["hidden_size"],)
    # randn(d) / sqrt(d): with d = 128 draws the sample std is within 20% of 1/sqrt(d), the mean near 0
    assert abs(newline.std().item() * math.sqrt(width) - 1) < 0.2
    assert abs(newline.mean().item()) < 3 / width


@pytest.mark.parametrize("preset", NEXT_PRESETS)
def test_each_preset_is_hub_exact(tmp_path, tiny_parts, preset):
    from transformers import AutoProcessor, AutoTokenizer

    from llava_lf.assembly import AssemblySpec, assemble_report
    from llava_lf.assembly.presets import load_preset
    from llava_lf.common.anyres import grid_pinpoints

    clip, llama = tiny_parts
    report = assemble_report(AssemblySpec(vision=clip, llm=llama, out=tmp_path / "next", progress=False,
                                          **load_preset(preset)))
    out = report.out
    config = json.loads((out / "config.json").read_text())
    tile = config["vision_config"]["image_size"]
    vocab = len(AutoTokenizer.from_pretrained(llama))
    assert config["architectures"] == ["LlavaNextForConditionalGeneration"] and config["model_type"] == "llava_next"
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
    assert config["image_grid_pinpoints"] == pinpoints == grid_pinpoints(("1x2", "2x1", "2x2", "3x1", "1x3"), tile)
    assert (config["projector_hidden_act"], config["vision_feature_layer"]) == ("gelu", -2)
    assert config["vision_feature_select_strategy"] == "default" and config["dtype"] == "float16"
    assert config["image_token_index"] == vocab  # <image> right after the LLM's vocabulary, as 32000 / 64000 / 128256
    assert config["text_config"]["vocab_size"] % 64 == 0 and config["image_seq_length"] == (tile // 16) ** 2

    names = stored(out)
    assert names.pop("image_newline") == ("F16", [config["text_config"]["hidden_size"]])
    assert all(name.startswith(HUB_PREFIXES) for name in names), sorted(names)[:5]

    image_processor = json.loads((out / "preprocessor_config.json").read_text())
    assert image_processor["image_processor_type"] == "LlavaNextImageProcessor"
    assert image_processor["processor_class"] == "LlavaNextProcessor"
    assert image_processor["image_grid_pinpoints"] == pinpoints
    assert (image_processor["size"], image_processor["crop_size"]) == ({"shortest_edge": tile},
                                                                      {"height": tile, "width": tile})
    assert all(image_processor[key] is True for key in ("do_center_crop", "do_convert_rgb", "do_normalize",
                                                        "do_rescale", "do_resize", "do_pad"))
    assert image_processor["resample"] == 3 and image_processor["rescale_factor"] == pytest.approx(1 / 255)
    processor_file = json.loads((out / "processor_config.json").read_text())
    assert processor_file == {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 16,
                              "processor_class": "LlavaNextProcessor", "vision_feature_select_strategy": "default"}

    processor = AutoProcessor.from_pretrained(out)
    assert processor.apply_chat_template(conversation(), add_generation_prompt=True) == EXPECTED_TEXT[preset]
    for token in FORMAT_TOKENS.get(preset, ()):
        assert processor.tokenizer.tokenize(token) == [token]
    assert bool(report.notes) == (preset in FORMAT_TOKENS)  # the tiny tokenizer lacks them: added, and said so


# LLaVA-NeXT facts 1.9: (width, height) -> transformers' count with the 1.6 settings (CLIP-L/336, patch 14); the
# last two are the tie-break and rounding cases where the original code counts 976 and 1296.
WORKED_EXAMPLES = {(1024, 899): 2634, (640, 480): 2340, (1920, 1080): 1948, (1000, 250): 1890, (400, 900): 1926,
                   (336, 336): 1176, (300, 200): 1464, (110, 352): 1392}


def test_anyres_count_is_transformers_on_the_worked_examples_and_a_sweep(tiny_parts):
    """`llava_lf.common.anyres` (which the assembly's pinpoints come from) against the installed processor's own
    arithmetic at 336 px, on the worked examples and a sweep that includes the round-to-7-places edge cases."""
    from transformers import AutoTokenizer, LlavaNextImageProcessor, LlavaNextProcessor

    from llava_lf.common.anyres import NEXT_GRIDS, grid_pinpoints, image_token_count

    pinpoints = grid_pinpoints(NEXT_GRIDS, 336)
    assert pinpoints == [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    for (width, height), tokens in WORKED_EXAMPLES.items():
        assert image_token_count(height, width, pinpoints, 336, 14) == tokens, (width, height)
    processor = LlavaNextProcessor(image_processor=LlavaNextImageProcessor(image_grid_pinpoints=pinpoints),
                                   tokenizer=AutoTokenizer.from_pretrained(tiny_parts[1]), patch_size=14,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    sizes = [(width, height) for width in range(10, 1400, 37) for height in range(10, 1400, 41)]
    sizes += [(110, 352), (352, 110), (47, 1128), (1, 900), (900, 1), (336, 337), (673, 336)]
    for width, height in sizes:  # the processor subtracts one for "default" after this
        expected = processor._get_number_of_features(height, width, 336, 336) - 1
        assert image_token_count(height, width, pinpoints, 336, 14) == expected, (width, height)
