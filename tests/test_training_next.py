"""LLaVA-NeXT's stage 2 as NeXT trained it, through the real `llamafactory-cli train` with the shipped recipes
(yaml/llava1_6_sft.yaml, yaml/llava1_6_lora_sft.yaml) on a tiny NeXT assembled from the session's tiny parts.

- Full: the vision tower in its own groups at `mm_vision_tower_lr`, everything else (language model, projector,
  `image_newline`) at the base rate; Adam's first step moves each trained tensor by its group's rate.
- LoRA: LoRA on the language model and the tower, the projector at `mm_projector_lr`, the tower's LoRA at
  `mm_vision_tower_lr`, `image_newline` trained at the base rate and saved beside the adapter; the exported model
  holds that trained `image_newline` and generates from pictures of several shapes.
- The LoRA recipe under ZeRO-3 on two CPU processes: the same groups, the newline gathered and saved.
- `mm_vision_tower_lr` with a frozen tower is refused, naming `freeze_vision_tower: false`.

Adam's first step (no weight decay, no warmup) moves every weight with a gradient by its rate times
|g| / (|g| + eps), so each trained tensor's largest change is its group's rate (the LoRA B matrices start at zero:
their largest value after one step is the rate). Rates are the recipes' scaled up; the three differ.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, REPO
from helpers.host_cli import cli
from helpers.tiny_next import assemble_tiny_next
from helpers.training_runs import DEEPSPEED_CPU_FIX

pytestmark = [pytest.mark.slow, pytest.mark.host, pytest.mark.timeout(1200)]

LR, PROJECTOR_LR, TOWER_LR = 2e-3, 2e-4, 5e-5
TINY = {  # a CPU, the tiny model, one step; every other setting comes from the recipe's YAML
    "bf16": False, "tf32": None, "cutoff_len": 256, "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
    "disable_gradient_checkpointing": True, "logging_steps": 1, "save_steps": 100, "save_total_limit": None,
    "warmup_steps": 0, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_steps": 1,
    "template": "llava_next",  # the host's NeXT template: it counts AnyRes tokens itself
    "dataset": "shapes_instruct", "disable_shuffling": False, "learning_rate": LR,
}
LORA = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
        "optim_args": f"mm_projector_lr={PROJECTOR_LR},mm_vision_tower_lr={TOWER_LR}"}
FULL = {"optim_args": f"mm_vision_tower_lr={TOWER_LR}"}
NEWLINE_FILE = "llava_lf_image_newline.safetensors"


@dataclass(frozen=True)
class Run:
    out: Path
    log: str

    def rates(self) -> dict[float, set[str]]:
        """Our report's optimizer groups: peak rate -> module kinds in it."""
        report = json.loads((self.out / "llava_lf_training.json").read_text())
        found: dict[float, set[str]] = {}
        for group in report["param_groups"]:
            if group["tensors"]:
                found.setdefault(group["initial_lr"], set()).update(group["modules"])
        return found

    def names_at(self, rate: float) -> set[str]:
        report = json.loads((self.out / "llava_lf_training.json").read_text())
        return {name for group in report["param_groups"] if group["initial_lr"] == rate for name in group["names"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("next_training")


@pytest.fixture(scope="module")
def next_model(root, tiny_parts) -> Path:
    out = root / "llava_next"
    assemble_tiny_next(tiny_parts, out)
    return out


def _train(root: Path, name: str, recipe: str, settings: dict, env: dict | None = None) -> Run:
    """One recipe YAML with the tiny settings (the host's torchrun relaunch splits key=value arguments at spaces)."""
    import yaml

    config = yaml.safe_load((REPO / "yaml" / recipe).read_text())
    config.update({**TINY, "output_dir": str(root / name), **settings})
    (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    cli("train", root / f"{name}.yaml", {}, root / f"{name}.log", env=env)
    return Run(root / name, (root / f"{name}.log").read_text())


def _base(next_model: Path, demo_data) -> dict:
    return {"model_name_or_path": str(next_model), "dataset_dir": str(demo_data[1])}


@pytest.fixture(scope="module")
def full(root, next_model, demo_data) -> Run:
    return _train(root, "full", "llava1_6_sft.yaml", {**_base(next_model, demo_data), **FULL})


@pytest.fixture(scope="module")
def lora(root, next_model, demo_data) -> Run:
    return _train(root, "lora", "llava1_6_lora_sft.yaml", {**_base(next_model, demo_data), **LORA})


@pytest.fixture(scope="module")
def lora_zero3(root, next_model, demo_data) -> Run:
    env = {"DS_ACCELERATOR": "cpu", "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(DEEPSPEED_CPU_FIX), os.environ.get("PYTHONPATH")])),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    deepspeed = str(REPO / "yaml" / "deepspeed" / "ds_z3_config.json")
    return _train(root, "lora_zero3", "llava1_6_lora_sft.yaml",
                  {**_base(next_model, demo_data), **LORA, "per_device_train_batch_size": 1, "deepspeed": deepspeed},
                  env)


@pytest.fixture(scope="module")
def exported(root, next_model, lora) -> Path:
    cli("export", REPO / "yaml" / "llava1_5_lora_export.yaml",
        {"model_name_or_path": next_model, "adapter_name_or_path": lora.out, "export_dir": root / "export",
         "template": "llava_next"}, root / "export.log")
    return root / "export"


def _parameters(folder: Path) -> dict:
    from transformers import LlavaNextForConditionalGeneration

    model = LlavaNextForConditionalGeneration.from_pretrained(folder)
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _largest_changes(before: dict, after: dict, part: str) -> dict[str, float]:
    """Largest change of each tensor of `part` that moved."""
    changes = {name: (after[name] - before[name]).abs().max().item() for name in before if part in name}
    return {name: change for name, change in changes.items() if change > 0}


def _at_rate(changes, rate: float) -> bool:
    """The largest change is the rate and none is larger (a tensor whose gradients are near Adam's eps moves less)."""
    return bool(changes) and max(changes) == pytest.approx(rate, rel=0.02) and max(changes) <= rate * 1.02


def _lora_b(adapter: dict, part: str) -> list[float]:
    return [value.abs().max().item() for key, value in adapter.items() if ".lora_B." in key and part in key]


def test_full_stage2_trains_the_tower_at_its_rate_and_the_newline_with_the_llm(full, next_model):
    assert full.rates() == {LR: {"language_model", "projector"}, TOWER_LR: {"vision_tower"}}
    assert any(name.endswith("image_newline") for name in full.names_at(LR))
    before, after = _parameters(next_model), _parameters(full.out)
    tower = _largest_changes(before, after, "vision_tower")
    assert _at_rate(list(tower.values()), TOWER_LR), tower
    llm = _largest_changes(before, after, "language_model")
    assert _at_rate(list(llm.values()), LR), llm
    (newline,) = (name for name in before if name.endswith("image_newline"))
    assert (after[newline] - before[newline]).abs().max().item() == pytest.approx(LR, rel=0.02)


def _check_lora(run: Run) -> None:
    assert run.rates() == {LR: {"language_model (LoRA)", "language_model"}, PROJECTOR_LR: {"projector"},
                           TOWER_LR: {"vision_tower (LoRA)"}}
    assert [name for name in run.names_at(LR) if "(LoRA)" not in name and "lora_" not in name] \
        and any(name.endswith("image_newline") for name in run.names_at(LR))
    adapter = _tensors(run.out / "adapter_model.safetensors")
    tower, llm = _lora_b(adapter, "vision_tower"), _lora_b(adapter, "language_model")
    assert _at_rate(tower, TOWER_LR), tower
    assert _at_rate(llm, LR), llm


def test_lora_stage2_trains_the_tower_at_its_rate_and_saves_the_trained_newline(lora, next_model):
    _check_lora(lora)
    (initial,) = (value for name, value in _parameters(next_model).items() if name.endswith("image_newline"))
    saved = _tensors(lora.out / NEWLINE_FILE)["image_newline"]
    assert (saved - initial).abs().max().item() == pytest.approx(LR, rel=0.02)


def test_lora_under_zero3_on_two_processes(lora_zero3, next_model):
    assert "world size: 2" in lora_zero3.log
    _check_lora(lora_zero3)
    (initial,) = (value for name, value in _parameters(next_model).items() if name.endswith("image_newline"))
    saved = _tensors(lora_zero3.out / NEWLINE_FILE)["image_newline"]
    assert saved.shape == initial.shape
    assert (saved - initial).abs().max().item() == pytest.approx(LR, rel=0.02)


def test_the_exported_lora_model_has_the_trained_newline_and_generates(exported, lora, next_model):
    import torch
    from test_assemble_next import picture
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    before, after = _parameters(next_model), _parameters(exported)
    (newline,) = (name for name in after if name.endswith("image_newline"))
    assert torch.equal(after[newline], _tensors(lora.out / NEWLINE_FILE)["image_newline"])
    assert not torch.equal(after[newline], before[newline])
    assert _largest_changes(before, after, "vision_tower")  # the tower's LoRA merged in
    model = LlavaNextForConditionalGeneration.from_pretrained(exported).eval()
    processor = AutoProcessor.from_pretrained(exported)
    for width, height in ((20, 14), (150, 50), (50, 150), (97, 61)):
        inputs = processor(images=picture(width, height), text="USER: <image>\nWhat is it? ASSISTANT:",
                           return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        assert output.shape[1] == inputs["input_ids"].shape[1] + 3, (width, height)


def test_a_tower_rate_with_a_frozen_tower_is_refused(root, next_model, demo_data):
    log = root / "frozen.log"
    config = {**_base(next_model, demo_data), **FULL, "freeze_vision_tower": True, "output_dir": str(root / "frozen")}
    import yaml

    recipe = yaml.safe_load((REPO / "yaml" / "llava1_6_sft.yaml").read_text())
    (root / "frozen.yaml").write_text(yaml.safe_dump({**recipe, **TINY, **config}))
    process = cli("train", root / "frozen.yaml", {}, log, wait=False)
    assert process.wait(timeout=600) != 0
    text = log.read_text()
    assert "mm_vision_tower_lr is set but no parameter of vision_tower is trained" in text, text[-3000:]
    assert "freeze_vision_tower: false" in text
