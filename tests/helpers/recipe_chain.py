"""The shipped LLaVA-1.5 recipe run once per test session on the tiny model, through the real `llamafactory-cli`:
stage 1 (yaml/llava1_5_pretrain.yaml), stage 2 twice side by side (yaml/llava1_5_lora_sft.yaml; one run killed
with SIGKILL after a checkpoint and resumed), and the export of stage 1 + the stage-2 adapter
(yaml/llava1_5_lora_export.yaml). conftest.py's session fixtures `recipe_chain` and `recipe_export` build them
on first use; the tests that only read the outputs share them (test_recipe_stages, test_inference_serving).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.host_cli import cli

REPO = Path(__file__).resolve().parents[2]

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


def build_recipe_chain(root: Path, tiny_llava: Path, demo_data) -> Chain:
    """Stage 1, then stage 2 twice side by side (one killed and resumed), in `root`."""
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
    return Chain(root, datasets, stage1, full, killed, at_kill, (root / "resumed.log").read_text(),
                 (root / "stage2.log").read_text())


def export_chain(chain: Chain) -> Path:
    """`llamafactory-cli export` of stage 1 + the uninterrupted stage-2 adapter: a standalone llava-hf folder."""
    out = chain.root / "export"
    cli("export", REPO / "yaml/llava1_5_lora_export.yaml",
        {"model_name_or_path": chain.stage1, "adapter_name_or_path": chain.stage2, "export_dir": out},
        chain.root / "export.log")
    return out
