"""The real `llamafactory-cli`, in subprocesses, uses our registered template: one process and torchrun."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import BIN

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]


def _train_config(tmp_path: Path, model: Path, datasets: Path, **overrides) -> Path:
    config = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": "shapes_instruct",
        "dataset_dir": str(datasets),
        "template": "llava_v1",
        "cutoff_len": 256,
        "max_samples": 16,
        "preprocessing_num_workers": 1,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1.0e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        **overrides,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_cli(config: Path, **env_overrides: str) -> subprocess.CompletedProcess:
    # As in an activated venv: the host launches `torchrun` from PATH.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env_overrides}
    return subprocess.run([str(BIN / "llamafactory-cli"), "train", str(config)], capture_output=True, text=True,
                          env=env, timeout=900)


def test_llamafactory_cli_trains_with_llava_v1(tmp_path, tiny_llava, demo_data):
    _, datasets = demo_data
    result = _run_cli(_train_config(tmp_path, tiny_llava, datasets))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    # The host prints one tokenised example: it must be the Vicuna v1 rendering of our template.
    assert "<s>A chat between a curious user and an artificial intelligence assistant." in log
    assert "questions. USER: <image><image>" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_torchrun_workers_see_our_template(tmp_path, tiny_llava, demo_data):
    _, datasets = demo_data
    config = _train_config(tmp_path, tiny_llava, datasets, ddp_backend="gloo")
    result = _run_cli(config, FORCE_TORCHRUN="1", NPROC_PER_NODE="2", CUDA_VISIBLE_DEVICES="")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Initializing 2 distributed tasks" in log
    # Each worker logs its rank; both got past template lookup (a missing template fails the run) and trained,
    # and the example the host prints was rendered by our template, not a look-alike.
    assert "Process rank: 0" in log and "Process rank: 1" in log
    assert "questions. USER: <image><image>" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
