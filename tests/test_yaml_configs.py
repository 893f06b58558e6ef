"""Every shipped YAML parses with the host's own argument parser (tiny model and temporary outputs swapped
in), so configs cannot drift from LLaMA-Factory 0.9.5; our plugin options and report_to names resolve too. So do
the commands each recipe's header tells a user to run: its overrides merged by the host's own command-line
reader, then parsed the same way."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO
from helpers.documented_commands import header_commands

import yaml

pytestmark = pytest.mark.host

YAML_DIR = REPO / "yaml"
# assemble/ and eval/ hold our own commands' YAMLs, not the host's
HOST_YAMLS = sorted(path for path in YAML_DIR.rglob("*.yaml") if not {"assemble", "eval"} & set(path.relative_to(YAML_DIR).parts))
RECIPE_YAMLS = sorted(YAML_DIR.glob("*.yaml"))
HEADER_FIELDS = ("Purpose", "Prerequisites", "Command", "Override example")


def _ids(paths):
    return [str(path.relative_to(YAML_DIR)) for path in paths]


def _hardware_free(config: dict, tiny_llava: Path, tmp_path: Path) -> dict:
    """The YAML as this CPU machine can parse it: the tiny model, temporary outputs, no GPU-only flags."""
    import torch

    config = {**config, "model_name_or_path": str(tiny_llava)}
    for key in ("output_dir", "export_dir"):
        if key in config:
            config[key] = str(tmp_path / key)
    if not torch.cuda.is_available() and config.get("do_train"):
        config.pop("tf32", None)  # transformers refuses tf32 without an Ampere GPU
        config["use_cpu"] = True  # and bf16 unless told that this is a CPU run
    return config


def test_every_recipe_yaml_is_covered():
    names = {path.name for path in RECIPE_YAMLS}
    assert {"llava1_5_pretrain.yaml", "llava1_5_lora_sft.yaml", "llava1_5_full_sft.yaml", "llava1_5_qlora_sft.yaml",
            "llava1_5_sqa_lora_sft.yaml", "llava1_5_lora_export.yaml", "llava1_5_infer.yaml",
            "llava_v1_pretrain.yaml", "llava_v1_full_sft.yaml", "llava_v1_sqa_full_sft.yaml"} <= names
    assert len(HOST_YAMLS) >= len(RECIPE_YAMLS) + 4  # the demo's too


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", HOST_YAMLS, ids=_ids(HOST_YAMLS))
def test_yaml_parses_with_the_host_parser(path, tiny_llava, tmp_path, monkeypatch):
    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)  # unknown keys must fail, not be ignored
    config = _hardware_free(yaml.safe_load(path.read_text()), tiny_llava, tmp_path)
    _parse_with_the_host(path, config, tiny_llava)


def _parse_with_the_host(path: Path, config: dict, tiny_llava: Path) -> None:
    """`config` through the host's get_train_args / get_infer_args, plus what only the Trainer would check."""
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import get_infer_args, get_train_args
    from transformers.integrations.integration_utils import get_reporting_integration_callbacks

    from llava_lf.training.options import parse_training_options

    if config.get("do_train"):
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
        # What only the Trainer would check: every report_to name, and our options in optim_args.
        get_reporting_integration_callbacks(training_args.report_to)
        options = parse_training_options(training_args.optim_args, training_args.optim)
        if options.group_by_modality:
            assert finetuning_args.disable_shuffling, f"{path.name}: group_by_modality needs disable_shuffling"
            assert "llava_lf" in training_args.report_to, f"{path.name}: options need report_to: [llava_lf]"
        if options.mm_projector_lr is not None:
            assert finetuning_args.additional_target == ["multi_modal_projector"]
            assert options.mm_projector_lr < training_args.learning_rate
    else:  # export and chat/api/webchat configs
        model_args, data_args, finetuning_args, _ = get_infer_args(config)
    if data_args.template is not None:  # `stage: pt` runs without a chat template
        assert data_args.template in TEMPLATES, f"{path.name}: template {data_args.template} is not registered"
    assert model_args.model_name_or_path == str(tiny_llava)


def _missing_header_fields(header: str) -> list[str]:
    """The fields that open no comment line of the header (a mention inside the prose does not count)."""
    return [field for field in HEADER_FIELDS if not re.search(rf"^#\s+{field}\b", header, re.MULTILINE)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", RECIPE_YAMLS, ids=_ids(RECIPE_YAMLS))
def test_header_commands_parse_with_the_host_parser(path, tiny_llava, tmp_path, monkeypatch):
    """The Command and Override example a header gives run this YAML with the verb its kind needs, and their
    `key=value` overrides, merged by the host's own command-line reader, parse as the YAML itself does."""
    from llamafactory.hparams.parser import read_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    monkeypatch.chdir(REPO)  # the commands are written to run from the project's root
    commands = header_commands(path)
    assert len(commands) >= 2, f"{path.name}: the header needs a Command and an Override example: {commands}"
    for documented in commands:
        verb, config_path, *overrides = documented.argv[1:]
        command = " ".join(documented.argv[1:])
        assert config_path == f"yaml/{path.name}", f"{path.name}: the header's command runs {config_path}"
        assert not documented.unrunnable, (str(documented), documented.unrunnable)
        monkeypatch.setattr(sys, "argv", ["llamafactory-cli", config_path, *overrides])  # as the CLI hands it on
        config = read_args()
        kind = "train" if config.get("do_train") else "export" if "export_dir" in config else "chat"
        assert verb == kind or (kind == "chat" and verb in ("webchat", "api")), (path.name, command)
        for word in overrides:
            key, value = word.split("=", 1)
            assert str(config[key]) == value, (path.name, command, key)
        # One process cannot take DeepSpeed (the host asks for FORCE_TORCHRUN); the config must be a shipped one
        # (test_deepspeed_configs_leave_sizes_to_the_trainer checks both), the rest parses here.
        deepspeed = config.pop("deepspeed", None)
        assert deepspeed in (None, "yaml/deepspeed/ds_z2_config.json", "yaml/deepspeed/ds_z3_config.json"), command
        _parse_with_the_host(path, _hardware_free(config, tiny_llava, tmp_path), tiny_llava)


@pytest.mark.parametrize("path", RECIPE_YAMLS, ids=_ids(RECIPE_YAMLS))
def test_recipe_yaml_header_and_datasets(path):
    lines = path.read_text().splitlines()
    header = "\n".join(line for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    assert not _missing_header_fields(header), (path.name, _missing_header_fields(header))
    assert f"yaml/{path.name}" in header, f"{path.name}: the header's command must name the file itself"
    config = yaml.safe_load(path.read_text())
    if "dataset" in config:  # a shipped registration, or the `_grouped` copy `llava-lf group-modality` makes of one
        registered = json.loads((REPO / "datasets" / "dataset_info.json").read_text())
        for name in config["dataset"].split(","):
            assert name in registered or name.removesuffix("_grouped") in registered, (path.name, name)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_leave_sizes_to_the_trainer(stage):
    config = json.loads((YAML_DIR / "deepspeed" / f"ds_z{stage}_config.json").read_text())
    assert config["zero_optimization"]["stage"] == stage
    # "auto" lets transformers fill batch sizes, accumulation, clipping and precision from the YAML.
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config[key] == "auto"
    assert config["bf16"]["enabled"] == "auto"
