"""The projector's own rate under FSDP: the real `llamafactory-cli train` of the LoRA YAML on the tiny model, two
CPU processes (gloo) through the host's torchrun launch, FSDP2 full sharding. The optimizer FSDP receives was
built with the projector's groups, so the first Adam step (no warmup) moves every projector weight by 2e-5
and every LoRA B by 2e-4, exactly as on one device."""

from __future__ import annotations

import json
import os

import pytest
from conftest import BIN, REPO
from helpers.host_cli import cli
from helpers.recipe_chain import TINY
from helpers.training_runs import first_step_sizes

LR, PROJECTOR_LR = 2e-4, 2e-5
pytestmark = [pytest.mark.slow, pytest.mark.host]


@pytest.mark.timeout(600)
def test_fsdp_trains_the_projector_at_its_own_rate(tmp_path, tiny_llava, demo_data):
    from safetensors.torch import load_file

    import yaml

    _, datasets = demo_data
    out = tmp_path / "run"
    # One YAML, not key=value overrides: the host's torchrun relaunch splits arguments at spaces.
    config = yaml.safe_load((REPO / "yaml" / "llava1_5_lora_sft.yaml").read_text())
    config.update({**TINY, "tf32": None, "save_total_limit": None, "disable_gradient_checkpointing": True,
                   "bf16": False, "model_name_or_path": str(tiny_llava), "dataset": "shapes_instruct",
                   "dataset_dir": str(datasets), "output_dir": str(out), "per_device_train_batch_size": 2,
                   "max_steps": 1, "save_steps": 100, "warmup_steps": 0, "lora_rank": 8, "lora_alpha": 16,
                   "optim_args": f"mm_projector_lr={PROJECTOR_LR}", "fsdp": "full_shard auto_wrap",
                   "fsdp_config": {"fsdp_version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]},
                   "use_cpu": True, "ddp_backend": "gloo"})
    (tmp_path / "fsdp.yaml").write_text(yaml.safe_dump(config))
    cli("train", tmp_path / "fsdp.yaml", {}, tmp_path / "fsdp.log",
        env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    log = (tmp_path / "fsdp.log").read_text()
    assert "world size: 2" in log and "FSDP2" in log

    report = json.loads((out / "llava_lf_training.json").read_text())
    by_rate: dict[float, set[str]] = {}
    for group in report["param_groups"]:
        by_rate.setdefault(group["initial_lr"], set()).update(group["modules"])
    assert by_rate == {LR: {"language_model (LoRA)"}, PROJECTOR_LR: {"projector"}}

    base, trained = load_file(tiny_llava / "model.safetensors"), load_file(out / "adapter_model.safetensors")
    projector_steps, lora_b_steps = first_step_sizes(base, trained)
    assert projector_steps and lora_b_steps
    assert all(step == pytest.approx(PROJECTOR_LR, rel=0.01) for step in projector_steps)
    assert all(step == pytest.approx(LR, rel=0.01) for step in lora_b_steps)
