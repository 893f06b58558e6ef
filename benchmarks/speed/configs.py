"""What each run trains with: the stock default (as the anchor measured it) and our recipe YAML.

Both get the benchmark's own settings (model, dataset, steps, seed, one log line per step, no saving
of checkpoints, the samples read in file order) and the same global batch, so step k of each run
trains on the same samples and their loss curves can be laid on top of each other. Everything else is
the path's own: the stock run is a stock user's LoRA config; ours is the YAML as shipped, micro batch,
attention, checkpointing and plugin options (`report_to: [llava_lf]` + `optim_args`) included.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import DATASET, BenchData

# Stock LLaMA-Factory 0.9.5 LoRA SFT as anchored in PERFORMANCE.md: its `llava` template, LoRA r 128 /
# alpha 256 on all linear layers of the language model, frozen vision tower, gradient checkpointing
# (the host's default), SDPA and bf16 on a GPU, micro batch 16.
STOCK_LORA: dict[str, Any] = {
    "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": 128, "lora_alpha": 256,
    "lora_target": "all", "freeze_vision_tower": True, "template": "llava", "cutoff_len": 2048,
    "per_device_train_batch_size": 16, "learning_rate": 2.0e-4, "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.03, "dataloader_num_workers": 4,
}
STOCK_GPU = {"bf16": True, "flash_attn": "sdpa"}
# Keys a recipe YAML may set that would make a benchmark run evaluate, resume or read stale data.
PLUGIN_REPORTER = "llava_lf"  # `report_to` name of our training callback: kept, other reporters dropped
NEUTRAL = {"tokenized_path": None, "eval_dataset": None, "val_size": 0.0, "eval_strategy": "no", "do_eval": False,
           "resume_from_checkpoint": None, "push_to_hub": False, "max_samples": None}


class PlanError(ValueError):
    pass


@dataclass
class RunPlan:
    name: str
    base: str  # "stock" or "ours"
    config: Path  # the YAML given to the host
    overrides: dict[str, Any] = field(default_factory=dict)  # `key=value` after it, as on the CLI

    def merged(self) -> dict[str, Any]:
        """The settings the host will see (YAML, then overrides)."""
        return {**(yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}), **self.overrides}

    @property
    def micro_batch(self) -> int:
        return int(self.merged().get("per_device_train_batch_size", 8))  # the host's default is HF's 8

    def cli_args(self) -> list[str]:
        return [str(self.config)] + [f"{key}={_cli_value(value)}" for key, value in self.overrides.items()]


def _cli_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_cli_value(item) for item in value) + "]"
    if isinstance(value, str) and yaml.safe_load(value) != value:  # "no" would arrive as False
        return json.dumps(value)
    return str(value)


def parse_assignments(items: list[str], where: str) -> dict[str, Any]:
    """`key=value` strings to a dict, values typed as YAML types them (true, 4, 2.0e-4, null)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PlanError(f"{where}: {item!r} is not key=value; write e.g. per_device_train_batch_size=32")
        parsed[key.strip()] = yaml.safe_load(value) if value else ""
    return parsed


def parse_variant(words: list[str]) -> tuple[str, str, dict[str, Any]]:
    """`NAME [base=stock|ours] key=value ...` -> (name, base, overrides); the base defaults to ours."""
    name, *items = words
    if "=" in name or name in ("stock", "ours"):
        raise PlanError(f"--variant {' '.join(words)}: the first word is the run's name, not {name!r}; "
                        "write e.g. --variant nockpt disable_gradient_checkpointing=true")
    overrides = parse_assignments(items, f"--variant {name}")
    base = overrides.pop("base", "ours")
    if base not in ("stock", "ours"):
        raise PlanError(f"--variant {name}: base={base!r}; it must be stock or ours")
    return name, base, overrides


@dataclass(frozen=True)
class BenchSettings:
    model_dir: Path
    data: BenchData
    work: Path
    max_steps: int
    seed: int
    on_gpu: bool
    stock_micro_batch: int
    every_run: dict[str, Any] = field(default_factory=dict)  # the shape profile's overrides for all runs


def _common(settings: BenchSettings, name: str) -> dict[str, Any]:
    common = {
        "model_name_or_path": str(settings.model_dir), "output_dir": str(settings.work / "runs" / name),
        "overwrite_output_dir": True, "max_steps": settings.max_steps, "seed": settings.seed, "logging_steps": 1,
        "save_strategy": "no", "plot_loss": False, "overwrite_cache": True, "disable_shuffling": True,
        # Forking several tokenising processes after CUDA initialised once hung for minutes (PERFORMANCE.md).
        "preprocessing_num_workers": 1,
    }
    if not settings.on_gpu:  # CPU check of correctness: full precision, no worker processes on shared cores
        common.update(bf16=False, fp16=False, tf32=False, dataloader_num_workers=0)
    return {**common, **settings.every_run}


def stock_plan(settings: BenchSettings, name: str = "stock", extra: dict[str, Any] | None = None) -> RunPlan:
    config = {**STOCK_LORA, "per_device_train_batch_size": settings.stock_micro_batch,
              "dataset": DATASET, "dataset_dir": str(settings.data.stock_dir), "media_dir": str(settings.data.media_dir),
              **(STOCK_GPU if settings.on_gpu else {}), "report_to": "none", **_common(settings, name)}
    path = settings.work / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return RunPlan(name, "stock", path, dict(extra or {}))


def ours_plan(settings: BenchSettings, ours_yaml: Path, name: str = "ours",
              extra: dict[str, Any] | None = None) -> RunPlan:
    if not ours_yaml.is_file():
        raise PlanError(f"our recipe YAML {ours_yaml} does not exist; pass --ours-yaml PATH")
    shipped = yaml.safe_load(ours_yaml.read_text(encoding="utf-8")) or {}
    overrides = {key: value for key, value in NEUTRAL.items() if key in shipped}
    reporters = shipped.get("report_to") or []
    reporters = [reporters] if isinstance(reporters, str) else list(reporters)
    if set(reporters) - {PLUGIN_REPORTER, "none"}:  # no wandb & co. from a benchmark; our callback stays
        overrides["report_to"] = [PLUGIN_REPORTER] if PLUGIN_REPORTER in reporters else "none"
    overrides.update(_common(settings, name), dataset=DATASET, dataset_dir=str(settings.data.ours_dir),
                     media_dir=str(settings.data.ours_dir))
    overrides.update(extra or {})
    return RunPlan(name, "ours", ours_yaml, overrides)


def align_global_batch(plans: list[RunPlan], global_batch: int | None) -> int:
    """Give every run the same samples per optimizer step by setting its accumulation steps.

    Without a given size, the least common multiple of the micro batches (16 and 32 give 32)."""
    micro = {plan.name: plan.micro_batch for plan in plans}
    size = global_batch or math.lcm(*micro.values())
    bad = [f"{name} (micro batch {m})" for name, m in micro.items() if size % m]
    if bad:
        raise PlanError(f"--global-batch {size} is not a multiple of the micro batch of {', '.join(bad)}; "
                        f"choose a common multiple, e.g. {math.lcm(*micro.values())}")
    for plan in plans:
        plan.overrides["gradient_accumulation_steps"] = size // micro[plan.name]
    return size


def plan_problems(plan: RunPlan) -> list[str]:
    """What the host or our callback would refuse in a run's settings, found without loading anything:
    keys no host argument class declares (the host stops on them), `optim_args` our callback cannot read."""
    from dataclasses import fields

    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )

    from llava_lf.training.options import TrainingOptionsError, parse_training_options

    declared = {item.name: item for cls in (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments,
                                            GeneratingArguments) for item in fields(cls)}
    merged = plan.merged()
    problems = [f"{plan.name}: {key} is no host training argument" for key in merged if key not in declared]
    if merged.get("optim_args"):
        try:
            parse_training_options(merged["optim_args"], merged.get("optim", declared["optim"].default))
        except TrainingOptionsError as error:
            problems.append(f"{plan.name}: optim_args: {error}")
    return problems
