"""LLaVA-NeXT from existing checkpoints: a LLaVA-1.5-layout stage 1 (`llava-lf assemble --preset llava1_6_* --llava`)
carried bit for bit, and an original-layout NeXT checkpoint (liuhaotian/llava-v1.6-*) imported as transformers' own
`convert_llava_next_weights_to_hf.py` converts it (its key mapping re-implemented below from the script)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.cli import llava_lf
from helpers.original_checkpoints import write_bin_shards

pytestmark = pytest.mark.timeout(300)

# convert_llava_next_weights_to_hf.py's KEYS_TO_MODIFY_MAPPING: substring replacements applied in this order to every
# key (`.inv_freq` keys dropped, every tensor cast to float16).
CONVERSION_MAPPING = (
    ("model.vision_tower.", ""), ("model.mm_projector", "multi_modal_projector"), ("model", "model.model"),
    ("vision_model.model", "vision_model"), ("lm_head", "language_model.lm_head"),
    ("model.model", "language_model.model"), ("multi_modal_projector.0", "multi_modal_projector.linear_1"),
    ("multi_modal_projector.2", "multi_modal_projector.linear_2"),
    ("language_model.model.image_newline", "image_newline"),
)


def converted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What transformers' conversion script makes of an original NeXT state dict, before it grows the vocabulary."""
    result = {}
    for key, value in state.items():
        if key.endswith(".inv_freq"):
            continue
        for old, new in CONVERSION_MAPPING:
            if old in key:
                key = key.replace(old, new)
        result[key] = value.to(torch.float16)
    return result


def tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    found = {}
    for file in sorted(directory.glob("*.safetensors")):
        found |= load_file(file)
    return found


def same_bits(first: torch.Tensor, second: torch.Tensor) -> bool:
    return (first.dtype == second.dtype and first.shape == second.shape
            and torch.equal(first.reshape(-1).view(torch.uint8), second.reshape(-1).view(torch.uint8)))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, tiny_parts) -> Path:
    """LLaVA-1.5's stage-1 starting point from the tiny parts, in bfloat16 (so a cast anywhere would show)."""
    from llava_lf.assembly import AssemblySpec, assemble
    from llava_lf.assembly.presets import load_preset

    clip, llama = tiny_parts
    settings = {**load_preset("llava1_5_7b"), "dtype": "bfloat16"}
    return assemble(AssemblySpec(vision=clip, llm=llama, out=tmp_path_factory.mktemp("stage1") / "s1", progress=False,
                                 **settings))


def test_stage1_upgrade_carries_every_tensor_bit_for_bit(tmp_path, stage1):
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    out = tmp_path / "next"
    result = llava_lf("assemble", "--preset", "llava1_6_vicuna_7b", "--llava", str(stage1), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    before, after = tensors(stage1), tensors(out)
    newline = after.pop("image_newline")
    assert sorted(after) == sorted(before)
    assert all(same_bits(after[name], before[name]) for name in before)
    width = json.loads((stage1 / "config.json").read_text())["text_config"]["hidden_size"]
    assert newline.dtype == torch.bfloat16 and newline.shape == (width,)
    assert abs(newline.float().std().item() * width**0.5 - 1) < 0.2

    config = json.loads((out / "config.json").read_text())
    old = json.loads((stage1 / "config.json").read_text())
    assert config["model_type"] == "llava_next" and config["dtype"] == "bfloat16"
    for key in ("image_token_index", "vision_feature_layer", "vision_feature_select_strategy", "projector_hidden_act"):
        assert config[key] == old[key], key
    model, info = LlavaNextForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "LlavaNextProcessor" and processor.num_additional_image_tokens == 1
    inputs = processor(text=processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True), images=__import__("PIL.Image").Image.new("RGB", (150, 50)), return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_a_stage1_resaved_by_transformers_upgrades_to_the_same_tensors(tmp_path, stage1):
    """Training saves stage 1 with transformers' save_pretrained, whatever layout that version writes."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    resaved = tmp_path / "trained"
    LlavaForConditionalGeneration.from_pretrained(stage1).save_pretrained(resaved)
    AutoProcessor.from_pretrained(stage1).save_pretrained(resaved)
    result = llava_lf("assemble", "--preset", "llava1_6_vicuna_7b", "--llava", str(resaved), "--out",
                      str(tmp_path / "next"), "--quiet")
    assert result.returncode == 0, result.stderr
    after, before = tensors(tmp_path / "next"), tensors(stage1)
    after.pop("image_newline")
    assert sorted(after) == sorted(before) and all(same_bits(after[name], before[name]) for name in before)


@pytest.mark.parametrize(("arguments", "message"), [
    (("--preset", "llava1_6_vicuna_7b", "--llava", "S1", "--vision", "X"), r"--llava and --vision: give either"),
    (("--preset", "llava1_6_vicuna_7b", "--llava", "S1", "--anyres-grids", "1x2,2by2"),
     r"AnyRes grid '2by2': write rows x columns"),
    (("--preset", "llava1_6_34b", "--llava", "S1"), r"lacks <\|im_start\|>, <\|im_end\|>, which chatml_direct writes"),
    (("--llava", "S1"), r"give a NeXT preset \(one with anyres_grids"),
    (("--preset", "llava1_6_vicuna_7b"), r"needs --vision and --llm \(the parts\), or --llava"),
    (("--preset", "llava1_6_vicuna_7b", "--vision", "CLIP", "--llm", "LLM", "--pad-to-square", "--select-strategy",
      "full"), r"full keeps CLIP's CLS token.*\n.*pad_to_square is LLaVA-1.5's single-tile padding"),
])
def test_next_assembly_refuses_what_it_cannot_build(tmp_path, stage1, tiny_parts, arguments, message):
    import re

    paths = {"S1": str(stage1), "CLIP": str(tiny_parts[0]), "LLM": str(tiny_parts[1])}
    result = llava_lf("assemble", *(paths.get(argument, argument) for argument in arguments), "--out",
                      str(tmp_path / "next"), "--quiet")
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "next").exists()


def test_upgrade_refuses_a_next_checkpoint(tmp_path, stage1):
    from llava_lf.assembly import AssemblyError, UpgradeSpec, upgrade_to_next

    grids = ("1x2", "2x1")
    first = upgrade_to_next(UpgradeSpec(llava=stage1, out=tmp_path / "next", anyres_grids=grids, progress=False))
    with pytest.raises(AssemblyError, match=r"is already LLaVA-NeXT"):
        upgrade_to_next(UpgradeSpec(llava=first, out=tmp_path / "again", anyres_grids=grids, progress=False))


@pytest.fixture(scope="module")
def original_next(tmp_path_factory, tiny_parts) -> dict:
    """A tiny liuhaotian/llava-v1.6-vicuna-7b: decoder under model.*, tuned tower under
    model.vision_tower.vision_tower.vision_model.*, model.mm_projector.0/2, model.image_newline; fp16 .bin shards."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    clip, llama = tiny_parts
    root = tmp_path_factory.mktemp("original_next")
    generator = torch.Generator().manual_seed(11)
    vision_width, text_width = 96, 128
    state = dict(load_file(llama / "model.safetensors"))
    tower = load_file(clip / "model.safetensors")  # transformers 5 saves a CLIPVisionModel without `vision_model.`
    state |= {"model.vision_tower.vision_tower.vision_model." + key.removeprefix("vision_model."): value
              for key, value in tower.items()}
    state |= {"model.mm_projector.0.weight": torch.randn(text_width, vision_width, generator=generator),
              "model.mm_projector.0.bias": torch.randn(text_width, generator=generator),
              "model.mm_projector.2.weight": torch.randn(text_width, text_width, generator=generator),
              "model.mm_projector.2.bias": torch.randn(text_width, generator=generator),
              "model.image_newline": torch.randn(text_width, generator=generator),
              "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(16)}
    state = {key: value.to(torch.float16) for key, value in state.items()}
    src = root / "llava-v1.6-tiny"
    src.mkdir()
    write_bin_shards(state, src)
    tile = json.loads((clip / "config.json").read_text())["image_size"]
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
    decoder = {key: value for key, value in json.loads((llama / "config.json").read_text()).items() if key != "dtype"}
    config = {**decoder, "model_type": "llava",
              "architectures": ["LlavaLlamaForCausalLM"], "torch_dtype": "float16", "mm_hidden_size": vision_width,
              "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
              "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "anyres",
              "mm_patch_merge_type": "spatial_unpad", "image_grid_pinpoints": pinpoints, "mm_use_im_start_end": False,
              "mm_use_im_patch_token": False, "mm_vision_tower_lr": 2e-06, "unfreeze_mm_vision_tower": True,
              "mm_projector_lr": None, "tokenizer_model_max_length": 4096, "tokenizer_padding_side": "left"}
    (src / "config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(llama)
    tokenizer.pad_token = "<unk>"  # liuhaotian's tokenizers pad with <unk>; llava-hf's conversion adds <pad>
    tokenizer.save_pretrained(src)
    return {"src": src, "clip": clip, "state": state, "pinpoints": pinpoints, "vocab": len(tokenizer)}


def test_original_next_imports_as_transformers_conversion_maps_it(tmp_path, original_next):
    from transformers import AddedToken, AutoProcessor, AutoTokenizer, LlavaNextForConditionalGeneration

    out = tmp_path / "hf"
    result = llava_lf("import-llava", str(original_next["src"]), "--vision", str(original_next["clip"]),
                      "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    reference = AutoTokenizer.from_pretrained(original_next["src"])  # the script's two token calls
    reference.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    reference.add_special_tokens({"pad_token": "<pad>"})
    expected, got = converted(original_next["state"]), tensors(out)
    assert sorted(got) == sorted(expected)
    vocab = original_next["vocab"]
    for name, value in expected.items():
        mine = got[name]
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):  # grown to a multiple of 64, as the script does
            assert mine.shape[0] == -(-len(reference) // 64) * 64
            mine = mine[:vocab]
        assert same_bits(mine, value), name

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava_next" and config["image_grid_pinpoints"] == original_next["pinpoints"]
    assert config["image_token_index"] == reference.convert_tokens_to_ids("<image>") == vocab
    assert config["pad_token_id"] == reference.pad_token_id
    assert config["vision_feature_layer"] == -2 and config["vision_feature_select_strategy"] == "default"
    model, info = LlavaNextForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert torch.equal(model.model.image_newline.data, original_next["state"]["model.image_newline"])
    processor = AutoProcessor.from_pretrained(out)
    assert processor.image_processor.image_grid_pinpoints == original_next["pinpoints"]
    assert processor.apply_chat_template([{"role": "user", "content": "<image>\nWhat?"}]).endswith(
        "USER: <image>\nWhat? ASSISTANT:")


def test_original_next_without_its_newline_is_refused(tmp_path, original_next):
    from llava_lf.assembly import AssemblyError, ImportSpec, import_llava

    src = tmp_path / "broken"
    shutil.copytree(original_next["src"], src)
    for shard in src.glob("*.bin"):
        state = torch.load(shard, weights_only=True)
        state.pop("model.image_newline", None)
        torch.save(state, shard)
    index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    index["weight_map"].pop("model.image_newline")
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(AssemblyError, match=r"LLaVA-NeXT config but no model.image_newline tensor"):
        import_llava(ImportSpec(src=src, vision=original_next["clip"], out=tmp_path / "out", progress=False))
