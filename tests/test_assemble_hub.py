"""The assembled checkpoint against the outside world: the inputs people really bring (Vicuna's SentencePiece
tokenizer and generation config, openai's whole CLIPModel with its legacy processor file), llava-hf's layout on
the hub, the model-card usage, and transformers 4.57 (which llamafactory 0.9.5 also allows)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN
from helpers.cli import llava_lf
from helpers.standins import VICUNA_GENERATION_CONFIG, build_openai_clip, build_vicuna

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.host]

HUB_PREFIXES = ("language_model.model.", "language_model.lm_head.weight", "multi_modal_projector.linear_1.",
                "multi_modal_projector.linear_2.", "vision_tower.vision_model.")
PRESET_KEYS = ("max_length", "truncation_strategy", "truncation", "padding", "stride", "pad_to_multiple_of")
TF457 = "4.57.6"
TF457_DIR = BIN.parent / ".transformers-4.57"  # the Makefile's TF457_DIR, beside this venv's bin/
LOAD_UNDER_457 = """
import json, sys
import torch, transformers
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
model, info = LlavaForConditionalGeneration.from_pretrained(sys.argv[1], output_loading_info=True)
processor = AutoProcessor.from_pretrained(sys.argv[1])
conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]}]
inputs = processor(text=processor.apply_chat_template(conversation, add_generation_prompt=True),
                   images=Image.new("RGB", (60, 30), (200, 10, 10)), return_tensors="pt")
with torch.no_grad():
    new = model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[-1] - inputs["input_ids"].shape[-1]
print(json.dumps({"version": transformers.__version__, "missing": list(info["missing_keys"]),
                  "unexpected": list(info["unexpected_keys"]), "ids": inputs["input_ids"][0].tolist(), "new": new}))
"""


def tensor_names(directory: Path) -> list[str]:
    with (directory / "model.safetensors").open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return [key for key in json.loads(handle.read(length)) if key != "__metadata__"]


def presets_in(directory: Path) -> dict[str, object]:
    """Truncation/padding presets a saved tokenizer carries, wherever transformers keeps them."""
    settings = json.loads((directory / "tokenizer_config.json").read_text())
    found = {key: settings[key] for key in PRESET_KEYS if key in settings}
    backend = json.loads((directory / "tokenizer.json").read_text())
    found |= {f"tokenizer.json {key}": backend[key] for key in ("truncation", "padding") if backend.get(key)}
    return found


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, object]:
    """The README's headline command on Vicuna and openai CLIP stand-ins, through `llava-lf`'s parser (in process)."""
    root = tmp_path_factory.mktemp("hub")
    vicuna, clip = build_vicuna(root / "vicuna"), build_openai_clip(root / "clip")
    result = llava_lf("assemble", "--preset", "llava1_5_7b", "--vision", str(clip), "--llm", str(vicuna),
                      "--out", str(root / "llava"), "--quiet")
    return {"vicuna": vicuna, "clip": clip, "out": root / "llava", "result": result}


def test_vicunas_generation_config_passes_through_with_one_note(hub):
    result = hub["result"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "left out temperature 0.9, top_p 0.6" in notes[0], result.stdout
    saved = json.loads((hub["out"] / "generation_config.json").read_text())
    config = json.loads((hub["out"] / "config.json").read_text())
    assert saved["bos_token_id"] == 1 and saved["eos_token_id"] == 2
    assert saved["max_length"] == VICUNA_GENERATION_CONFIG["max_length"]  # carried
    assert saved["pad_token_id"] == config["pad_token_id"]  # the new <pad>, not <unk> 0
    assert "temperature" not in saved and "top_p" not in saved and not saved.get("do_sample")


def test_config_and_tensor_names_are_llava_hfs(hub):
    import torch
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    out = hub["out"]
    config = json.loads((out / "config.json").read_text())
    vocab = len(AutoTokenizer.from_pretrained(hub["vicuna"]))
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert (config["image_token_index"], config["pad_token_id"]) == (vocab, vocab + 1)  # 32000, 32001 in 7B
    assert config["text_config"]["vocab_size"] == -(-(vocab + 2) // 64) * 64  # 32064 in 7B
    assert (config["projector_hidden_act"], config["vision_feature_layer"]) == ("gelu", -2)
    assert config["vision_feature_select_strategy"] == "default"
    assert config["text_config"]["tie_word_embeddings"] is False and config["dtype"] == "float16"

    names = tensor_names(out)
    assert all(name.startswith(HUB_PREFIXES) for name in names), sorted(names)[:5]
    clip = torch.load(hub["clip"] / "pytorch_model.bin", weights_only=True)
    tower = {key for key in clip if key.startswith("vision_model.") and "position_ids" not in key}
    assert {name.removeprefix("vision_tower.") for name in names if name.startswith("vision_tower.")} == tower
    model, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded = model.model.vision_tower.state_dict()
    assert all(torch.equal(loaded[key.removeprefix("vision_model.")], clip[key].half()) for key in tower)


def test_one_bos_and_the_training_ids_for_both_model_card_usages(hub, tmp_path):
    from PIL import Image
    from test_templates import encode_like_training
    from transformers import AutoProcessor

    out = hub["out"]
    processor = AutoProcessor.from_pretrained(out)
    tokenizer = processor.tokenizer
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<pad>" and presets_in(out) == {}
    image_file = tmp_path / "red.png"
    Image.new("RGB", (60, 30), (200, 10, 10)).save(image_file)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert not text.startswith(tokenizer.bos_token)
    card = processor(text=text, images=Image.open(image_file), return_tensors="pt")["input_ids"][0].tolist()
    with_image = [{"role": "user", "content": [{"type": "image", "image": Image.open(image_file)},
                                               {"type": "text", "text": "What color is it?"}]}]
    tokenized = processor.apply_chat_template(with_image, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"][0]
    training_ids, labels = encode_like_training(AutoProcessor.from_pretrained(out), "llava_v1",
                                                [{"role": "user", "content": "<image>\nWhat color is it?"},
                                                 {"role": "assistant", "content": "red"}], [str(image_file)])
    prompt = training_ids[: labels.index(next(label for label in labels if label != -100))]
    assert card.count(tokenizer.bos_token_id) == 1 and card[0] == tokenizer.bos_token_id
    assert list(tokenized) == card == prompt


@pytest.fixture(scope="session")
def transformers_457() -> Path:
    """transformers 4.57.6 (and the huggingface_hub 0.x it needs) in their own folder beside the venv, installed
    once by `make transformers-4.57` (`make test` and `make test-release` make it first). Missing is a failure,
    never a skip: the check must not vanish from a run in silence."""
    if not (TF457_DIR / ".installed").is_file():
        pytest.fail(f"{TF457_DIR} is missing (or half made): run `make transformers-4.57` first; `make test` and "
                    f"`make test-release` do it", pytrace=False)
    return TF457_DIR


def test_loads_under_transformers_4_57_with_no_missing_or_unexpected_keys(hub, transformers_457):
    env = {**os.environ, "PYTHONPATH": str(transformers_457), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOAD_UNDER_457, str(hub["out"])], capture_output=True, text=True,
                            env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == TF457
    assert loaded["missing"] == [] and loaded["unexpected"] == []
    assert loaded["ids"].count(1) == 1 and loaded["ids"][0] == 1 and loaded["new"] >= 1


def test_no_truncation_preset_survives_assembly_or_export(tmp_path, tiny_parts):
    """A tokenizer once called with `truncation=True, max_length=16` (the host's `stage: pt` does so) saves that
    preset; plain transformers would then cut every prompt to 16 tokens. Neither assembly nor export keeps it."""
    import shutil

    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer

    import yaml
    from llava_lf.assembly import AssemblySpec, assemble

    clip, llama = tiny_parts
    llm = tmp_path / "warm_llm"
    shutil.copytree(llama, llm)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    tokenizer(["a circle"], truncation=True, max_length=16, padding="max_length")
    tokenizer.save_pretrained(llm)
    assert presets_in(llm), "the stand-in must carry the preset, as the demo's warm-up output did"

    out = assemble(AssemblySpec(vision=clip, llm=llm, out=tmp_path / "llava", progress=False))
    assert presets_in(out) == {}
    long_prompt = "USER: <image>\n" + "circle square " * 40 + "ASSISTANT:"
    ids = AutoProcessor.from_pretrained(out)(text=long_prompt, images=Image.new("RGB", (48, 48)))["input_ids"][0]
    assert len(ids) > 60

    config = tmp_path / "export.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(out), "template": "llava_v1",
                                      "finetuning_type": "full", "export_dir": str(tmp_path / "export"),
                                      "export_legacy_format": False}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(BIN / "llamafactory-cli"), "export", str(config)], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert presets_in(tmp_path / "export") == {}
    assert AutoTokenizer.from_pretrained(tmp_path / "export").padding_side == "left"
