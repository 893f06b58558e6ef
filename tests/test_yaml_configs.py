"""Every shipped YAML parses with the host's own argument parser (tiny model and temporary outputs swapped
in), so configs cannot drift from LLaMA-Factory 0.9.5; our plugin options and report_to names resolve too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO

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
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import get_infer_args, get_train_args
    from transformers.integrations.integration_utils import get_reporting_integration_callbacks

    from llava_lf.training.options import parse_training_options

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)  # unknown keys must fail, not be ignored
    config = _hardware_free(yaml.safe_load(path.read_text()), tiny_llava, tmp_path)
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


def test_header_check_fails_on_fields_only_mentioned_in_prose():
    prose = "# Purpose: see the Command and Override example below; Prerequisites are in the docs.\n"
    assert _missing_header_fields(prose) == ["Prerequisites", "Command", "Override example"]
    assert _missing_header_fields(prose + "# Prerequisites: x\n#   Command: y\n# Override example: z\n") == []


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
