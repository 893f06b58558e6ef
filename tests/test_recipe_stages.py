"""The shipped recipe YAMLs, run by the real `llamafactory-cli` on the tiny model (sizes overridden on the
command line as a user would): stage 1 trains only the projector; stage 2 trains LoRA and the projector, each
at its own learning rate, on modality-grouped data; a stage-2 run killed with SIGKILL after a checkpoint and
restarted with `resume_from_checkpoint` ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, REPO

pytestmark = [pytest.mark.slow, pytest.mark.host]

LR, PROJECTOR_LR, STAGE2_STEPS = 2e-4, 2e-5, 6
TINY = {  # what a CPU and a toy model need; every other setting comes from the YAML itself
    "bf16": "false", "tf32": "null", "cutoff_len": 256, "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
    "disable_gradient_checkpointing": "true", "logging_steps": 1, "save_total_limit": "null",
}


@dataclass(frozen=True)
class Chain:
    root: Path
    datasets: Path
    stage1: Path
    stage2: Path  # uninterrupted
    killed: Path  # the SIGKILLed run, restarted with resume_from_checkpoint
    checkpoints_at_kill: list[str]
    resumed_log: str
    stage2_log: str


def cli(command: str, config: Path, overrides: dict, log: Path, wait: bool = True, env: dict | None = None):
    """`llamafactory-cli COMMAND CONFIG key=value ...` in its own process group, output to `log`.

    It runs in the log's folder: the web UI writes a `llamaboard_cache/` into its working directory.
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    args = [str(BIN / "llamafactory-cli"), command, str(config)] + [f"{k}={v}" for k, v in overrides.items()]
    with open(log, "w") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   cwd=log.parent)
    if wait:
        code = process.wait(timeout=600)
        assert code == 0, f"{' '.join(args)} exited {code}:\n{log.read_text()[-4000:]}"
    return process


def _mixed_grouped_dataset(root: Path, demo_data) -> Path:
    """The demo's questions plus text-only rows, converted and put in modality-grouped order."""
    from llava_lf.data.convert import convert_file
    from llava_lf.data.modality.regroup import regroup_dataset

    data, _ = demo_data
    records = json.loads(data.instruct_json.read_text())[:36]
    records += [{"id": f"text-{i}", "conversations": [{"from": "human", "value": f"Which colours are there? ({i})"},
                                                      {"from": "gpt", "value": "red, green and blue"}]}
                for i in range(8)]
    (root / "mixed.json").write_text(json.dumps(records))
    convert_file(root / "mixed.json", data.image_dir, root / "datasets", "shapes_mixed")
    regroup_dataset(root / "datasets", "shapes_mixed", batch=4, seed=0)
    return root / "datasets"


def _kill_after_checkpoint(process: subprocess.Popen, out: Path, step: int) -> list[str]:
    marker = out / f"checkpoint-{step}" / "trainer_state.json"  # written last: the checkpoint is complete
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert process.poll() is None, f"the run to be killed exited early with {process.returncode}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return sorted(path.name for path in out.glob("checkpoint-*"))


_CHAINS: dict[Path, Chain] = {}


def recipe_chain(tmp_path_factory, tiny_llava: Path, demo_data) -> Chain:
    """Stage 1, then stage 2 twice side by side (one killed and resumed); built once per test session."""
    if tiny_llava in _CHAINS:
        return _CHAINS[tiny_llava]
    root = tmp_path_factory.mktemp("recipe")
    _, demo_datasets = demo_data
    stage1 = root / "stage1"
    cli("train", REPO / "yaml/llava1_5_pretrain.yaml",
        {**TINY, "model_name_or_path": tiny_llava, "dataset": "shapes_caption", "dataset_dir": demo_datasets,
         "output_dir": stage1, "per_device_train_batch_size": 4, "max_steps": 3, "save_steps": 100}, root / "stage1.log")

    datasets = _mixed_grouped_dataset(root, demo_data)
    stage2 = {**TINY, "model_name_or_path": stage1, "dataset": "shapes_mixed_grouped", "dataset_dir": datasets,
              "per_device_train_batch_size": 4, "max_steps": STAGE2_STEPS, "save_steps": 1, "lora_rank": 8,
              "lora_alpha": 16, "warmup_steps": 0}  # no warmup: the first step moves each weight by its full lr
    full, killed = root / "stage2", root / "stage2_killed"
    # The two runs start side by side; each reads its own copy of the data, so they share no datasets cache.
    victim_data = shutil.copytree(datasets, root / "datasets_victim")
    uninterrupted = cli("train", REPO / "yaml/llava1_5_lora_sft.yaml", {**stage2, "output_dir": full},
                        root / "stage2.log", wait=False)
    victim = cli("train", REPO / "yaml/llava1_5_lora_sft.yaml",
                 {**stage2, "output_dir": killed, "dataset_dir": victim_data}, root / "killed.log", wait=False)
    at_kill = _kill_after_checkpoint(victim, killed, step=2)
    assert uninterrupted.wait(timeout=600) == 0, (root / "stage2.log").read_text()[-4000:]
    cli("train", REPO / "yaml/llava1_5_lora_sft.yaml",
        {**stage2, "output_dir": killed, "dataset_dir": victim_data, "resume_from_checkpoint": killed / "checkpoint-2"},
        root / "resumed.log")
    chain = Chain(root, datasets, stage1, full, killed, at_kill, (root / "resumed.log").read_text(),
                  (root / "stage2.log").read_text())
    _CHAINS[tiny_llava] = chain
    return chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_llava, demo_data) -> Chain:
    return recipe_chain(tmp_path_factory, tiny_llava, demo_data)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {key: value for path in sorted(folder.glob("*.safetensors")) for key, value in load_file(path).items()}


def _model_state(folder: Path) -> dict:
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(folder).state_dict()


def _report(folder: Path) -> dict:
    return json.loads((folder / "llava_lf_training.json").read_text())


@pytest.mark.timeout(900)
def test_stage1_trains_only_the_projector(chain, tiny_llava):
    import torch

    before, after = _model_state(tiny_llava), _model_state(chain.stage1)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    projector = {key for key in before if ".multi_modal_projector." in f".{key}"}
    assert changed == projector and len(projector) == 4  # both layers' weight and bias; CLIP and LLM untouched
    report = _report(chain.stage1)
    assert set(report["trainable_parameters"]) == {"projector"}
    assert {group["initial_lr"] for group in report["param_groups"]} == {1e-3}  # the YAML's stage-1 rate


@pytest.mark.timeout(900)
def test_stage2_trains_lora_and_projector_each_at_its_own_rate(chain):
    import torch

    report = _report(chain.stage2)
    assert report["options"] == {"mm_projector_lr": PROJECTOR_LR, "group_by_modality": True, "recompute_layers": None,
                                 "sdpa_backend": None, "compile_layers": False}
    assert set(report["trainable_parameters"]) == {"projector", "language_model (LoRA)"}  # never the vision tower
    by_rate = {}
    for group in report["param_groups"]:
        by_rate.setdefault(group["initial_lr"], set()).update(group["modules"])
    assert by_rate == {LR: {"language_model (LoRA)"}, PROJECTOR_LR: {"projector"}}
    # The data was grouped and read in order: every micro-batch all-image or all-text, both kinds present.
    assert report["modality"]["mixed_batches"] == 0 and report["modality"]["text_batches"] >= 2
    # fa2 was asked for; without the flash-attn package the host falls back to SDPA, and says so.
    assert report["attention"]["text"] == "sdpa" and "FlashAttention-2 is not installed" in chain.stage2_log

    # The rates really applied: Adam's first step (no warmup) moves every weight by its group's full rate.
    base, first = _weights(chain.stage1), _weights(chain.stage2 / "checkpoint-1")
    projector_steps, lora_b_steps = [], []
    for key, value in first.items():
        if ".multi_modal_projector." in key:
            source = "multi_modal_projector." + key.split(".multi_modal_projector.")[1]
            projector_steps.append((value - base[source]).abs().max().item())
        elif ".lora_B." in key:  # starts at zero
            lora_b_steps.append(value.abs().max().item())
    assert len(projector_steps) == 4 and len(lora_b_steps) == 14
    assert all(step == pytest.approx(PROJECTOR_LR, rel=0.01) for step in projector_steps)
    assert all(step == pytest.approx(LR, rel=0.01) for step in lora_b_steps)

    final = _weights(chain.stage2)  # the adapter: LoRA and the whole projector, nothing of CLIP or the LLM itself
    assert all(".lora_" in key or ".multi_modal_projector." in key for key in final)
    assert not any("vision_tower" in key for key in final)
    moved_a = [key for key in final if ".lora_A." in key and not torch.equal(final[key], first[key])]
    assert len(moved_a) == 14  # LoRA A trains from step 2 on, once B is no longer zero


@pytest.mark.timeout(900)
def test_killed_stage2_resumes_to_the_same_weights(chain):
    import torch

    # The victim was killed after checkpoint-2, before it could finish: no final adapter, no last checkpoint.
    assert "checkpoint-2" in chain.checkpoints_at_kill
    assert f"checkpoint-{STAGE2_STEPS}" not in chain.checkpoints_at_kill
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in chain.resumed_log
    assert _report(chain.killed)["global_step_at_start"] == 2
    resumed, uninterrupted = _weights(chain.killed), _weights(chain.stage2)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    states = [json.loads((run / "trainer_state.json").read_text())["log_history"] for run in (chain.killed, chain.stage2)]
    losses = [[entry["loss"] for entry in history if "loss" in entry] for history in states]
    assert losses[0][-STAGE2_STEPS + 2:] == losses[1][-STAGE2_STEPS + 2:]  # steps 3..6 saw the same batches
