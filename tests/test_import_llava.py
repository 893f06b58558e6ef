"""`llava-lf import-llava`: original LLaVA checkpoints (liuhaotian format), built here from tiny models with the
original key names, convert to the same llava-hf model that direct assembly of the same weights gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.cli import llava_lf
from helpers.original_checkpoints import write_bin_shards
from helpers.standins import VICUNA_GENERATION_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

VISION_WIDTH, TEXT_WIDTH = 96, 128  # the tiny CLIP's and tiny LLaMA's hidden sizes (conftest's tiny_parts)
LLAVA_1_5_KEYS = {
    "model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"], "mm_hidden_size": VISION_WIDTH,
    "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
    "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
    "mm_use_im_patch_token": False, "mm_patch_merge_type": "flat", "tune_mm_mlp_adapter": False, "use_mm_proj": True,
    "freeze_mm_mlp_adapter": False,
}


def projector_weights(kind: str, seed: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if kind == "linear":  # LLaVA v1: a bare nn.Linear
        return {"model.mm_projector.weight": torch.randn(TEXT_WIDTH, VISION_WIDTH, generator=generator) * 0.05,
                "model.mm_projector.bias": torch.randn(TEXT_WIDTH, generator=generator) * 0.05}
    return {"model.mm_projector.0.weight": torch.randn(TEXT_WIDTH, VISION_WIDTH, generator=generator) * 0.05,
            "model.mm_projector.0.bias": torch.randn(TEXT_WIDTH, generator=generator) * 0.05,
            "model.mm_projector.2.weight": torch.randn(TEXT_WIDTH, TEXT_WIDTH, generator=generator) * 0.05,
            "model.mm_projector.2.bias": torch.randn(TEXT_WIDTH, generator=generator) * 0.05}


def write_original(out: Path, llm: Path, extra: dict[str, torch.Tensor], config: dict) -> Path:
    """An original-format checkpoint: two .bin shards with an index, the decoder's config plus mm_* keys."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    state = {**load_file(llm / "model.safetensors"), **extra}
    out.mkdir(parents=True)
    write_bin_shards(state, out)
    decoder = json.loads((llm / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**decoder, **config}))
    AutoTokenizer.from_pretrained(llm).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_parts) -> dict[str, Path]:
    """A LLaVA-1.5-style original checkpoint and the same weights as separate parts."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("original_llava")
    clip, llama = tiny_parts
    llm = root / "vicuna"  # LLaVA-1.5's tokenizer pads with <unk>: replaced by <pad>, as llava-hf does
    shutil.copytree(llama, llm)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    tokenizer.pad_token = "<unk>"
    tokenizer.save_pretrained(llm)
    projector = projector_weights("mlp2x_gelu")
    torch.save(projector, root / "mm_projector.bin")
    src = write_original(root / "llava-v1.5-tiny", llm, projector, {**LLAVA_1_5_KEYS, "max_length": 4096})
    (src / "generation_config.json").write_text(json.dumps(VICUNA_GENERATION_CONFIG))  # liuhaotian ships Vicuna's
    return {"clip": clip, "llm": llm, "src": src, "mm_projector": root / "mm_projector.bin", "root": root}


def logits(model_dir: Path, image) -> tuple[torch.Tensor, dict]:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    inputs = processor(text=["USER: <image>\nWhat shape is it? ASSISTANT:"], images=[image], return_tensors="pt")
    with torch.no_grad():
        return LlavaForConditionalGeneration.from_pretrained(model_dir).eval()(**inputs).logits, inputs


def test_import_gives_the_logits_of_direct_assembly(tmp_path, original):
    from test_assemble import picture

    from llava_lf.assembly import AssemblySpec, assemble

    result = llava_lf("import-llava", original["src"], "--vision", original["clip"], "--out", tmp_path / "imported",
                      "--quiet")
    assert result.returncode == 0, result.stderr
    assert "projector mlp2x_gelu from SRC" in result.stdout and "pad to square: yes" in result.stdout
    direct = assemble(AssemblySpec(vision=original["clip"], llm=original["llm"], out=tmp_path / "direct",
                                   projector_weights=original["mm_projector"], pad_to_square=True, progress=False))

    image = picture(40, 64)
    imported_logits, imported_inputs = logits(tmp_path / "imported", image)
    direct_logits, direct_inputs = logits(direct, image)
    assert torch.equal(imported_inputs["input_ids"], direct_inputs["input_ids"])
    assert torch.equal(imported_inputs["pixel_values"], direct_inputs["pixel_values"])
    assert (imported_logits - direct_logits).abs().max().item() <= 1e-5
    config = json.loads((tmp_path / "imported" / "config.json").read_text())
    assert (config["vision_feature_layer"], config["vision_feature_select_strategy"]) == (-2, "default")
    assert config["text_config"]["vocab_size"] == 448 and config["pad_token_id"] == 3  # <pad>, not <unk> 0
    assert not any(key.startswith("mm_") for key in config["text_config"]) and "max_length" not in config["text_config"]
    generation = json.loads((tmp_path / "imported" / "generation_config.json").read_text())
    assert "max_length" not in generation and generation["pad_token_id"] == 3 and "temperature" not in generation
    tokenizer = json.loads((tmp_path / "imported" / "tokenizer_config.json").read_text())
    assert tokenizer["pad_token"] == "<pad>" and tokenizer["padding_side"] == "left" and "max_length" not in tokenizer


def test_a_tower_inside_the_checkpoint_wins(tmp_path, original):
    from safetensors.torch import load_file
    from transformers import CLIPVisionModel, LlavaForConditionalGeneration

    from llava_lf.assembly import ImportSpec, import_llava
    from llava_lf.demo.tiny_models import TinyDims, build_vision_tower

    tuned = CLIPVisionModel.from_pretrained(build_vision_tower(TinyDims(), tmp_path / "tuned_clip", seed=1))
    # Original LLaVA nests HF's CLIPVisionModel (`vision_model.*`) inside its own CLIPVisionTower.
    tower = {f"model.vision_tower.vision_tower.vision_model.{key}": value
             for key, value in tuned.state_dict().items()}
    src = write_original(tmp_path / "src", original["llm"], {**projector_weights("mlp2x_gelu"), **tower},
                         LLAVA_1_5_KEYS)
    out = import_llava(ImportSpec(src=src, vision=original["clip"], out=tmp_path / "out", progress=False))
    imported = LlavaForConditionalGeneration.from_pretrained(out).model.vision_tower.state_dict()
    for key, value in tuned.state_dict().items():
        assert torch.equal(imported[key], value), key
    given = load_file(original["clip"] / "model.safetensors")
    assert not torch.equal(imported["embeddings.patch_embedding.weight"], given["embeddings.patch_embedding.weight"])


def test_v1_linear_projector_imports_exactly(tmp_path, original):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from llava_lf.assembly import ImportSpec, import_llava

    v1_config = {key: value for key, value in LLAVA_1_5_KEYS.items()
                 if key not in {"mm_projector_type", "image_aspect_ratio", "mm_patch_merge_type"}}
    weights = projector_weights("linear")
    src = write_original(tmp_path / "src", original["llm"], weights, v1_config)
    out = import_llava(ImportSpec(src=src, vision=original["clip"], out=tmp_path / "out", progress=False))
    model = LlavaForConditionalGeneration.from_pretrained(out)
    assert model.config.projector_hidden_act == "linear"
    assert AutoProcessor.from_pretrained(out).image_processor.to_dict().get("do_pad") in (None, False)
    features = torch.randn(2, 9, VISION_WIDTH)
    with torch.no_grad():
        got = model.model.multi_modal_projector(features)
    expected = features @ weights["model.mm_projector.weight"].T + weights["model.mm_projector.bias"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _lora(tmp_path: Path, original: dict) -> Path:
    src = tmp_path / "lora"
    shutil.copytree(original["src"], src)
    (src / "adapter_config.json").write_text("{}")
    return src


def _stage1_only(tmp_path: Path, original: dict) -> Path:
    src = tmp_path / "stage1"
    src.mkdir()
    shutil.copy(original["src"] / "config.json", src)
    shutil.copy(original["mm_projector"], src)
    return src


def _with_config(tmp_path: Path, original: dict, **changes) -> Path:
    src = tmp_path / "changed"
    shutil.copytree(original["src"], src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **changes}))
    return src


IMPORT_ERRORS = {
    "im_start_end": (lambda t, o: _with_config(t, o, mm_use_im_start_end=True), r"mm_use_im_start_end is true"),
    "anyres_max_9": (lambda t, o: _with_config(t, o, image_aspect_ratio="anyres_max_9", mm_patch_merge_type="spatial_unpad"),
                     r"other tilings have no llava-hf LlavaNext form"),
    "anyres without pinpoints": (lambda t, o: _with_config(t, o, image_aspect_ratio="anyres",
                                                           mm_patch_merge_type="spatial_unpad"),
                                 r"image_grid_pinpoints None: LLaVA-NeXT's anyres needs the list"),
    "mlp3x": (lambda t, o: _with_config(t, o, mm_projector_type="mlp3x_gelu"), r"only linear and mlp2x_gelu"),
    "tower width": (lambda t, o: _with_config(t, o, mm_hidden_size=1024),
                    r"mm_hidden_size 1024 but the tower in --vision .* is 96 wide"),
    "already llava-hf": (lambda t, o: o["tiny_llava"], r"already a llava-hf checkpoint; use it directly"),
    "lora adapter": (_lora, r"is a LoRA adapter; merge it into its base first"),
    "stage-1 projector only": (_stage1_only, r"holds only a stage-1 projector .* --projector-weights"),
    "plain language model": (lambda t, o: o["llm"], r"has no mm_\* keys.*llava-lf assemble --llm"),
}


@pytest.mark.parametrize("case", list(IMPORT_ERRORS))
def test_import_errors_name_the_file_and_the_fix(tmp_path, original, tiny_llava, case):
    from llava_lf.assembly import AssemblyError, ImportSpec, import_llava

    make, message = IMPORT_ERRORS[case]
    src = make(tmp_path, {**original, "tiny_llava": tiny_llava})
    with pytest.raises(AssemblyError, match=message):
        import_llava(ImportSpec(src=src, vision=original["clip"], out=tmp_path / "out", progress=False))
    assert not (tmp_path / "out").exists()
