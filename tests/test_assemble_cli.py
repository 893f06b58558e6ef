"""`llava-lf assemble` presets and flags, and the assembled checkpoint in plain transformers and `llamafactory-cli`.
`llava-lf` runs in process (helpers/cli.py); `llamafactory-cli` as the user's subprocess."""

from __future__ import annotations

import json

import pytest
from conftest import REPO
from helpers.cli import llava_lf
from helpers.host_cli import cli

import yaml

pytestmark = pytest.mark.host

PRESETS = sorted((REPO / "yaml" / "assemble").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[path.stem for path in PRESETS])
def test_shipped_presets_load_and_spell_their_recipe(preset):
    from llava_lf.assembly.presets import load_preset

    choices = load_preset(str(preset))
    assert choices["vision_feature_layer"] == -2 and choices["select_strategy"] == "default"
    if preset.stem.startswith("llava1_5"):
        assert choices["projector"] == "mlp2x_gelu" and choices["pad_to_square"] is True
    elif "anyres_grids" in choices:  # LLaVA-NeXT (tests/test_assemble_next.py checks what they build)
        assert choices["projector"] == "mlp2x_gelu" and choices["pad_to_square"] is False
    else:
        assert choices["projector"] == "linear" and choices["pad_to_square"] is False
    assert load_preset(preset.stem) == choices  # a preset can also be named


def test_preset_errors_name_the_file_and_the_valid_keys(tmp_path):
    from llava_lf.assembly import AssemblyError
    from llava_lf.assembly.presets import load_preset

    bad = tmp_path / "bad.yaml"
    bad.write_text("projector: mlp3x_gelu\nvision_layer: -2\npad_to_square: 1\n")
    with pytest.raises(AssemblyError) as caught:
        load_preset(str(bad))
    message = str(caught.value)
    assert f"{bad}: projector 'mlp3x_gelu' is not one of mlp2x_gelu, linear" in message
    assert f"{bad}: unknown key 'vision_layer'; valid keys: projector, vision_feature_layer" in message
    assert f"{bad}: pad_to_square must be a bool, got 1" in message
    with pytest.raises(AssemblyError, match="known presets: llava1_5_13b, llava1_5_7b"):
        load_preset("llava_2")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_checkpoint_loads_in_transformers_and_trains_with_llamafactory(tmp_path, tiny_parts, demo_data):
    """Preset + overriding flags through the real CLI, then plain transformers, then two training steps."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    clip, llama = tiny_parts
    out = tmp_path / "llava"
    result = llava_lf("assemble", "--preset", "llava1_5_7b", "--vision", str(clip), "--llm", str(llama),
                      "--out", str(out), "--dtype", "float32", "--select-strategy", "full", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"llava-hf checkpoint written to {out}" in result.stdout and "10 tokens per image" in result.stdout
    config = json.loads((out / "config.json").read_text())
    # The preset's choices, with the flags' overrides on top.
    assert (config["projector_hidden_act"], config["vision_feature_layer"]) == ("gelu", -2)
    assert (config["vision_feature_select_strategy"], config["dtype"]) == ("full", "float32")

    processor = AutoProcessor.from_pretrained(out)
    assert processor.image_processor.do_pad is True
    model = LlavaForConditionalGeneration.from_pretrained(out).eval()
    data, datasets = demo_data
    image = Image.open(next(data.image_dir.iterdir())).convert("RGB")
    inputs = processor(text=["USER: <image>\nWhat shape? ASSISTANT:"], images=[image], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3

    train = {
        "model_name_or_path": str(out), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "freeze_vision_tower": True, "freeze_language_model": True, "freeze_multi_modal_projector": False,
        "disable_gradient_checkpointing": True,
        "dataset": "shapes_caption", "dataset_dir": str(datasets), "template": "llava_plain", "cutoff_len": 128,
        "max_samples": 8, "preprocessing_num_workers": 1, "output_dir": str(tmp_path / "stage1"),
        "per_device_train_batch_size": 2, "max_steps": 2, "learning_rate": 1.0e-3, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    cli("train", tmp_path / "train.yaml", {}, tmp_path / "train.log")
    trained = LlavaForConditionalGeneration.from_pretrained(tmp_path / "stage1")
    # Stage 1 moved the projector and nothing else.
    for name, before in model.state_dict().items():
        changed = not torch.equal(before, trained.state_dict()[name])
        assert changed == ("multi_modal_projector" in name), name


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, tiny_parts):
    _, llama = tiny_parts
    result = llava_lf("assemble", "--vision", str(llama), "--llm", str(llama), "--out", str(tmp_path / "x"), "--quiet")
    assert result.returncode == 2
    assert result.stderr.startswith("llava-lf assemble: --vision") and "not a CLIP or SigLIP vision model" in result.stderr
    assert not (tmp_path / "x").exists()
