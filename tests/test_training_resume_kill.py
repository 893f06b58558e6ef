"""Training resume after SIGKILL: a stage-2 LoRA run of the real `llamafactory-cli` on the tiny model
is killed while it writes a checkpoint, then started again with the same command, as docs/recipe.md promises.
It must resume from a complete checkpoint (never the half-written one) and finish; an explicit
`resume_from_checkpoint` of a complete checkpoint ends with the same weights. The choice of checkpoint is also
checked on real folders for each way a kill can leave them."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from helpers.host_cli import cli
from helpers.recipe_chain import TINY

from llava_lf.training.resume import choose_resume_point

pytestmark = pytest.mark.host

LORA_YAML = REPO / "yaml" / "llava1_5_lora_sft.yaml"
STEPS = 4


def _checkpoint(root: Path, step: int, state: str | None) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_resume_point_skips_what_a_kill_left_half_written(tmp_path):
    complete = json.dumps({"global_step": 1, "log_history": []})
    _checkpoint(tmp_path, 1, complete)
    _checkpoint(tmp_path, 2, complete[:10])  # killed while writing trainer_state.json
    _checkpoint(tmp_path, 3, None)  # killed before it
    newest = str(tmp_path / "checkpoint-3")
    choice = choose_resume_point(tmp_path, newest)  # what the host picks for "the same command"
    assert choice.checkpoint == str(tmp_path / "checkpoint-1") and not choice.refused
    assert choice.skipped == (newest, str(tmp_path / "checkpoint-2"))
    assert choose_resume_point(tmp_path, str(tmp_path / "checkpoint-1")).changed is False
    assert choose_resume_point(tmp_path, str(tmp_path / "checkpoint-2")).refused  # chosen by hand: stop
    assert choose_resume_point(tmp_path, None).checkpoint is None


def _kill_during_checkpoint_write(process: subprocess.Popen, out: Path, step: int) -> bool:
    """SIGKILL the run as soon as `checkpoint-STEP/` appears; True if it was still incomplete then."""
    folder = out / f"checkpoint-{step}"
    deadline = time.monotonic() + 300
    while not folder.exists():
        assert process.poll() is None, f"the run exited early with {process.returncode}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    return not (folder / "trainer_state.json").exists()


def _final_state(out: Path) -> dict:
    return json.loads((out / "trainer_state.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_during_a_checkpoint_write_the_same_command_resumes(tmp_path, tiny_llava, demo_data):
    _, datasets = demo_data
    out = tmp_path / "run"
    overrides = {**TINY, "model_name_or_path": tiny_llava, "dataset": "shapes_instruct", "dataset_dir": datasets,
                 "output_dir": out, "per_device_train_batch_size": 4, "max_steps": STEPS, "save_steps": 1,
                 "lora_rank": 8, "lora_alpha": 16, "optim_args": "mm_projector_lr=2e-5"}
    victim = cli("train", LORA_YAML, overrides, tmp_path / "victim.log", wait=False)
    kill_step = random.Random(os.getpid()).choice([2, 3])  # bounded: a checkpoint after the first complete one
    incomplete = _kill_during_checkpoint_write(victim, out, kill_step)
    assert victim.returncode == -signal.SIGKILL
    left = sorted(path.name for path in out.glob("checkpoint-*"))
    shutil.copytree(out, tmp_path / "explicit")  # the same state for the explicit resume below

    cli("train", LORA_YAML, overrides, tmp_path / "again.log")  # the same command
    log = (tmp_path / "again.log").read_text()
    resumed_from = kill_step - 1 if incomplete else kill_step
    if incomplete:
        assert f"skipped incomplete checkpoint(s) {out / f'checkpoint-{kill_step}'}" in log, left
    assert f"Resuming training from checkpoint with epoch 0 and global step {resumed_from}" in log
    assert _final_state(out)["global_step"] == STEPS
    assert (out / "adapter_model.safetensors").exists()
    report = json.loads((out / "llava_lf_training.json").read_text())
    assert report["global_step_at_start"] == resumed_from

    explicit = tmp_path / "explicit"
    cli("train", LORA_YAML, {**overrides, "output_dir": explicit,
                             "resume_from_checkpoint": explicit / f"checkpoint-{resumed_from}"},
        tmp_path / "explicit.log")
    assert _final_state(explicit)["global_step"] == STEPS
    from safetensors.torch import load_file

    same, explicit_weights = load_file(out / "adapter_model.safetensors"), load_file(explicit / "adapter_model.safetensors")
    assert same.keys() == explicit_weights.keys()
    assert all((same[key] == explicit_weights[key]).all() for key in same)
