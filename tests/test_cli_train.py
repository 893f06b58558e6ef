"""The real `llamafactory-cli`, in subprocesses, uses our registered template: one process and torchrun."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.host_cli import cli

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


def _train(config: Path, **env: str) -> str:
    """The run's log; the run must succeed."""
    log = config.parent / "train.log"
    cli("train", config, {}, log, env=env, timeout=900)
    return log.read_text()


def test_llamafactory_cli_trains_with_llava_v1(tmp_path, tiny_llava, demo_data):
    _, datasets = demo_data
    log = _train(_train_config(tmp_path, tiny_llava, datasets))
    # The host prints one tokenised example: it must be the Vicuna v1 rendering of our template.
    assert "<s>A chat between a curious user and an artificial intelligence assistant." in log
    assert "questions. USER: <image><image>" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_torchrun_workers_see_our_template(tmp_path, tiny_llava, demo_data):
    _, datasets = demo_data
    config = _train_config(tmp_path, tiny_llava, datasets, ddp_backend="gloo")
    log = _train(config, FORCE_TORCHRUN="1", NPROC_PER_NODE="2", CUDA_VISIBLE_DEVICES="")
    assert "Initializing 2 distributed tasks" in log
    # Each worker logs its rank; both got past template lookup (a missing template fails the run) and trained,
    # and the example the host prints was rendered by our template, not a look-alike.
    assert "Process rank: 0" in log and "Process rank: 1" in log
    assert "questions. USER: <image><image>" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
