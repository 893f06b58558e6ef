"""docs/recipe.md's stage-2 command as a user runs it: `FORCE_TORCHRUN=1 llamafactory-cli train
yaml/llava1_5_lora_sft.yaml deepspeed=yaml/deepspeed/ds_z3_config.json`, two CPU processes (gloo), gradient
checkpointing on as shipped, with `additional_target: multi_modal_projector` (PEFT's wrapped copy of the projector).

Without llava_lf's seam (plugin/llava_lf/seams/zero3_wrapped_modules.py) DeepSpeed <= 0.19.2 stops at the first
step with "'LlavaMultiModalProjector' object has no attribute 'ds_grads_remaining'". Here it trains, the projector
moves at `mm_projector_lr`, and its losses match the same run without checkpointing (where the bug never showed).

Only model, data, precision and sizes are overridden (what a CPU and a toy model need); LoRA rank, alpha and
dropout, `additional_target`, `optim_args`, the rates and the scheduler are the recipe's. `warmup_steps` is a size
here: the recipe's 3% of three steps is one warm-up step at rate 0, after which no step shows the rates.
See tests/test_training_deepspeed.py for what DeepSpeed on a CPU needs (DS_ACCELERATOR=cpu, the gloo backport).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, REPO
from helpers.recipe_chain import cli
from helpers.training_runs import DEEPSPEED_CPU_FIX, first_step_sizes

pytestmark = [pytest.mark.slow, pytest.mark.host]

RECIPE, ZERO3 = REPO / "yaml" / "llava1_5_lora_sft.yaml", REPO / "yaml" / "deepspeed" / "ds_z3_config.json"
STEPS, WORLD = 3, 2
SIZES = {"bf16": "false", "tf32": "null", "cutoff_len": 64, "per_device_train_batch_size": 2, "max_steps": STEPS,
         "save_steps": 1, "save_total_limit": "null", "logging_steps": 1, "warmup_steps": 0,
         "preprocessing_num_workers": 1, "dataloader_num_workers": 0}


@dataclass(frozen=True)
class Run:
    out: Path
    log: str

    def losses(self) -> dict[int, float]:
        history = json.loads((self.out / "trainer_state.json").read_text())["log_history"]
        return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def _recipe() -> dict:
    import yaml

    return yaml.safe_load(RECIPE.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llava, demo_data) -> dict[str, Run]:
    """The documented command with checkpointing (as shipped) and without it, from the same fresh LoRA."""
    _, datasets = demo_data
    root = tmp_path_factory.mktemp("zero3_lora")
    pythonpath = os.pathsep.join(filter(None, [str(DEEPSPEED_CPU_FIX), os.environ.get("PYTHONPATH")]))
    env = {"DS_ACCELERATOR": "cpu", "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": str(WORLD), "PYTHONPATH": pythonpath,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    found = {}
    for name, extra in (("checkpointing", {}), ("no_checkpointing", {"disable_gradient_checkpointing": "true"})):
        overrides = {"deepspeed": ZERO3, "model_name_or_path": tiny_llava, "dataset": "shapes_instruct",
                     "dataset_dir": datasets, "output_dir": root / name, **SIZES, **extra}
        cli("train", RECIPE, overrides, root / f"{name}.log", env=env)
        found[name] = Run(root / name, (root / f"{name}.log").read_text())
    return found


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.timeout(1200)
def test_lora_recipe_trains_under_zero3_with_checkpointing(runs, tiny_llava):
    from safetensors.torch import load_file

    recipe = _recipe()
    assert "disable_gradient_checkpointing" not in recipe and recipe["additional_target"] == "multi_modal_projector"
    run = runs["checkpointing"]
    assert "world size: 2" in run.log and "DeepSpeed ZeRO3 detected" in run.log
    assert "Gradient checkpointing enabled" in run.log
    losses = run.losses()
    assert sorted(losses) == list(range(1, STEPS + 1)), losses
    assert all(math.isfinite(loss) for loss in losses.values()), losses
    assert losses[STEPS] < losses[1] - 0.05, losses  # ~0.3 at the recipe's rates; batch-to-batch noise ~0.02

    # The rates inside DeepSpeed's optimizer: Adam's first step moves each weight by its group's rate (sign of the
    # gradient times the rate, whatever the clipping). The projector's copy starts as the base projector, LoRA B
    # at zero.
    options = dict(pair.split("=") for pair in recipe["optim_args"].split(","))
    projector_lr, lr = float(options["mm_projector_lr"]), float(recipe["learning_rate"])
    base = load_file(tiny_llava / "model.safetensors")
    projector, lora_b = first_step_sizes(base, _weights(run.out / "checkpoint-1"))
    assert len(projector) == 4 and len(lora_b) == 14
    assert all(step == pytest.approx(projector_lr, rel=0.01) for step in projector), projector
    assert all(step == pytest.approx(lr, rel=0.01) for step in lora_b), lora_b


# Checkpointing recomputes each layer's forward in backward (LoRA's dropout masks replayed); in fp32 on a CPU it is
# the same arithmetic in the same order. Measured: losses equal to the last bit over 3 steps, adapters equal. The
# tolerance is far under a real difference: the same run with lora_dropout 0 instead of 0.05 moves step 2 by 3.6e-3
# (6e-4 relative).
LOSS_TOL, WEIGHT_TOL = 1e-6, 1e-6


@pytest.mark.timeout(1200)
def test_checkpointing_changes_no_result(runs):
    run, reference = runs["checkpointing"], runs["no_checkpointing"]
    assert "Gradient checkpointing enabled" not in reference.log
    losses, expected = run.losses(), reference.losses()
    assert losses.keys() == expected.keys()
    assert all(losses[step] == pytest.approx(expected[step], rel=LOSS_TOL) for step in losses), (losses, expected)
    trained, other = _weights(run.out), _weights(reference.out)
    assert trained.keys() == other.keys()
    assert max((trained[key] - other[key]).abs().max().item() for key in trained) < WEIGHT_TOL


def _offload_module(name: str, source: str):
    """A separate copy of ZeRO-3's module from `source` (the process's own stays as the hook left it)."""
    import types

    import deepspeed.runtime.zero.parameter_offload as installed

    module = types.ModuleType(name)
    module.__dict__.update(__file__=installed.__file__, __package__=installed.__package__)
    exec(compile(source, installed.__file__, "exec"), module.__dict__)
    return module


# DeepSpeed's own fix (deepspeedai/DeepSpeed#8144): the three questions asked of the module's own __dict__.
UPSTREAM_FIX = {'not hasattr(module, "pre_bwd_fn")': '"pre_bwd_fn" not in module.__dict__',
                'not hasattr(module, "post_bwd_fn")': '"post_bwd_fn" not in module.__dict__',
                'not hasattr(ctx.module, "applied_pre_backward_ref_cnt")':
                    '"applied_pre_backward_ref_cnt" not in ctx.module.__dict__'}


def test_seam_backports_deepspeeds_fix_and_steps_aside_where_deepspeed_has_it():
    import inspect

    import deepspeed.runtime.zero.parameter_offload as installed
    import torch

    from llava_lf.seams import zero3_wrapped_modules as seam

    source = inspect.getsource(installed)
    fixed_source = source
    for old, new in UPSTREAM_FIX.items():
        fixed_source = fixed_source.replace(old, new)
    fixed = _offload_module("offload_fixed", fixed_source)
    assert seam.gives_own_hooks(fixed)
    assert not seam.install(fixed) and "hasattr" not in fixed.__dict__  # nothing changed on a fixed DeepSpeed

    shipped = _offload_module("offload_shipped", source)
    if fixed_source != source:  # this DeepSpeed has the bug: a wrapper gets its child's hooks until installed
        assert not seam.gives_own_hooks(shipped)
        assert seam.install(shipped) and seam.installed(shipped)
    assert seam.gives_own_hooks(shipped)
    # Any question but the three, or of a module that answers only for itself, is Python's own.
    plain, wrapper = torch.nn.Linear(1, 1), seam._wrapper()
    plain.post_bwd_fn = wrapper.inner.post_bwd_fn = object
    for name in ("post_bwd_fn", "pre_bwd_fn", "weight", "ds_grads_remaining"):
        assert seam._hasattr(plain, name) == hasattr(plain, name)
    assert hasattr(wrapper, "post_bwd_fn") and not seam._hasattr(wrapper, "post_bwd_fn")
    assert seam._hasattr(wrapper, "weight")  # delegated answers for every other name
