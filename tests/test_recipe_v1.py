"""LLaVA v1's recipe YAMLs, run by the real `llamafactory-cli` on a tiny model assembled with v1's linear
projector (sizes overridden on the command line as a user would): stage 1 trains only the projector at 2e-3,
stage 2 trains the LLM and the projector at 2e-5, and the ScienceQA fine-tune does the same on a mix of
image and text-only questions. Everything else (template, freezing, schedule) comes from the YAMLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from helpers.host_cli import cli
from helpers.recipe_chain import TINY

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]

STEPS = 2


@pytest.fixture(scope="module")
def tiny_v1(tmp_path_factory, tiny_parts) -> Path:
    """The tiny CLIP and LLaMA with the `llava_v1_linear` preset's choices (one linear projector, no padding)."""
    from llava_lf.assembly import AssemblySpec, assemble
    from llava_lf.assembly.presets import load_preset

    preset = load_preset("llava_v1_linear")
    clip, llama = tiny_parts
    return assemble(AssemblySpec(vision=clip, llm=llama, out=tmp_path_factory.mktemp("tiny_v1") / "model",
                                 projector=preset["projector"], pad_to_square=preset["pad_to_square"],
                                 vision_feature_layer=preset["vision_feature_layer"], progress=False))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_v1, demo_data) -> dict[str, Path]:
    """Stage 1, then stage 2 and the ScienceQA fine-tune from it, each for a few steps."""
    root = tmp_path_factory.mktemp("recipe_v1")
    data, demo_datasets = demo_data
    steps = {**TINY, "per_device_train_batch_size": 4, "max_steps": STEPS, "save_steps": 100}
    out = {name: root / name for name in ("stage1", "stage2", "sqa")}
    cli("train", REPO / "yaml/llava_v1_pretrain.yaml",
        {**steps, "model_name_or_path": tiny_v1, "dataset": "shapes_caption", "dataset_dir": demo_datasets,
         "output_dir": out["stage1"]}, root / "stage1.log")
    cli("train", REPO / "yaml/llava_v1_full_sft.yaml",
        {**steps, "model_name_or_path": out["stage1"], "dataset": "shapes_instruct", "dataset_dir": demo_datasets,
         "output_dir": out["stage2"]}, root / "stage2.log")
    cli("train", REPO / "yaml/llava_v1_sqa_full_sft.yaml",
        {**steps, "model_name_or_path": out["stage1"], "dataset": "shapes_sqa_mix",
         "dataset_dir": _image_and_text_questions(root, data), "output_dir": out["sqa"]}, root / "sqa.log")
    return {"base": tiny_v1, **out}


def _image_and_text_questions(root: Path, data) -> Path:
    """ScienceQA's shape: image questions and text-only ones in one file, in no particular order."""
    from llava_lf.data.convert import convert_file

    records = json.loads(data.instruct_json.read_text())[:12]
    records[::3] = [{"id": f"text-{i}", "conversations": [
        {"from": "human", "value": f"Which is a colour? ({i})\nOptions: (A) red (B) seven"},
        {"from": "gpt", "value": "The answer is A."}]} for i in range(len(records[::3]))]
    (root / "sqa_mix.json").write_text(json.dumps(records))
    convert_file(root / "sqa_mix.json", data.image_dir, root / "datasets", "shapes_sqa_mix")
    return root / "datasets"


def _changed(before: Path, after: Path) -> set[str]:
    import torch
    from transformers import LlavaForConditionalGeneration

    old = LlavaForConditionalGeneration.from_pretrained(before).state_dict()
    new = LlavaForConditionalGeneration.from_pretrained(after).state_dict()
    assert old.keys() == new.keys()
    return {key for key in old if not torch.equal(old[key], new[key])}


def _report(folder: Path) -> dict:
    return json.loads((folder / "llava_lf_training.json").read_text())


def _yaml(name: str) -> dict:
    return yaml.safe_load((REPO / "yaml" / name).read_text())


def test_v1_yamls_carry_the_papers_values():
    pretrain, full, sqa = (_yaml(f"llava_v1_{name}.yaml") for name in ("pretrain", "full_sft", "sqa_full_sft"))
    global_batch = {name: config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * 8
                    for name, config in (("pretrain", pretrain), ("full", full), ("sqa", sqa))}
    assert global_batch == {"pretrain": 128, "full": 32, "sqa": 32}  # on the 8 GPUs of the commands
    assert (pretrain["learning_rate"], pretrain["num_train_epochs"], pretrain["template"]) == (2e-3, 1, "llava_plain")
    assert (full["learning_rate"], full["num_train_epochs"], full["template"]) == (2e-5, 3, "llava_v1")
    assert (sqa["learning_rate"], sqa["num_train_epochs"], sqa["template"]) == (2e-5, 12, "llava_v1")
    assert pretrain["dataset"] == "llava_cc3m_595k" and full["dataset"] == "llava_instruct_150k"
    assert sqa["dataset"] == "scienceqa_llava_train"
    assert full["model_name_or_path"] == sqa["model_name_or_path"] == pretrain["output_dir"]
    registered = json.loads((REPO / "datasets" / "dataset_info.json").read_text())
    assert registered["llava_cc3m_595k"]["file_name"] == "llava_cc3m_595k.jsonl"  # what `llava-lf convert` writes


@pytest.mark.timeout(1200)
def test_v1_stage1_trains_only_the_linear_projector(runs):
    changed = _changed(runs["base"], runs["stage1"])
    assert changed and all(".multi_modal_projector." in f".{key}" for key in changed)
    assert any("linear_1" in key for key in changed)
    report = _report(runs["stage1"])
    assert set(report["trainable_parameters"]) == {"projector"}
    assert {group["initial_lr"] for group in report["param_groups"]} == {2e-3}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("run", ["stage2", "sqa"])
def test_v1_fine_tunes_train_llm_and_projector_not_clip(runs, run):
    changed = _changed(runs["stage1"], runs[run])
    assert not any("vision_tower" in key for key in changed)
    assert any(".multi_modal_projector." in f".{key}" for key in changed)
    assert any("language_model" in key or key.startswith("lm_head") for key in changed)
    report = _report(runs[run])
    assert set(report["trainable_parameters"]) == {"projector", "language_model"}
    assert {group["initial_lr"] for group in report["param_groups"]} == {2e-5}
    assert report.get("global_step_at_start", 0) == 0
    state = json.loads((runs[run] / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
