"""`llava_lf_training.json`: what a run trains, at which learning rate, with which attention and data order."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .model_parts import ModuleKeys, module_kind

REPORT_NAME = "llava_lf_training.json"


@dataclass
class ParamGroupReport:
    lr: float
    initial_lr: float | None
    weight_decay: float
    tensors: int
    parameters: int
    modules: dict[str, int]  # module kind -> tensors
    names: list[str]


@dataclass
class TrainingReport:
    options: dict[str, Any]
    global_step_at_start: int
    trainable_parameters: dict[str, int]  # module kind -> parameter count
    param_groups: list[ParamGroupReport]
    attention: dict[str, str | None]
    modality: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def write(self, output_dir: str | Path) -> Path:
        path = Path(output_dir) / REPORT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        groups = "; ".join(
            f"lr {group.lr:.3g} (peak {group.initial_lr if group.initial_lr is not None else group.lr:.3g}): "
            + ", ".join(f"{count} {kind}" for kind, count in sorted(group.modules.items()))
            for group in self.param_groups if group.tensors
        )
        return f"param groups: {groups}; attention: {self.attention}"


FUSED = "fused (DeepSpeed flat buffer)"


def _numel(parameter: Any) -> int:
    return getattr(parameter, "ds_numel", None) or parameter.numel()  # ZeRO-3 leaves an empty local tensor


def model_params_by_group(optimizer: Any) -> list[list[Any]]:
    """The model's own parameters in each of the optimizer's groups, in the groups' order.

    DeepSpeed ZeRO replaces what a group's `params` holds once it takes the optimizer over (transformers hands
    it the optimizer our seam built, wrapped by accelerate's DeepSpeedOptimizerWrapper):
    - ZeRO-1/2 (`DeepSpeedZeroOptimizer`): one flat fp32 tensor, this rank's slice of the group; the model's
      tensors of group i stay in `bit16_groups[i]`.
    - ZeRO-3 (`DeepSpeedZeroOptimizer_Stage3`): an empty list between steps (filled only inside its step); the
      model's partitioned parameters are in `fp16_groups`, sub-groups mapped to groups by `sub_group_to_group_id`.
    Any other optimizer (plain, DDP, FSDP) keeps the model's parameters in its groups.
    """
    groups = optimizer.param_groups
    inner = optimizer
    for _ in range(4):  # accelerate wrapper -> DeepSpeed ZeRO optimizer -> torch optimizer
        sub_groups, to_group = getattr(inner, "fp16_groups", None), getattr(inner, "sub_group_to_group_id", None)
        if sub_groups is not None and isinstance(to_group, dict):  # ZeRO-3
            found: list[list[Any]] = [[] for _ in groups]
            for index, sub_group in enumerate(sub_groups):
                found[to_group[index]].extend(sub_group)
            return found
        bit16 = getattr(inner, "bit16_groups", None)
        if bit16 is not None and len(bit16) == len(groups):  # ZeRO-1/2
            return [list(params) for params in bit16]
        inner = getattr(inner, "optimizer", None)
        if inner is None:
            break
    return [list(group["params"]) for group in groups]


def describe_param_groups(param_groups: Iterable[dict], named_parameters: Iterable[tuple[str, Any]],
                          keys: ModuleKeys, group_params: list[list[Any]] | None = None) -> list[ParamGroupReport]:
    """One report per group; `group_params` (model_params_by_group) replaces what DeepSpeed put in the groups."""
    names = {id(p): name for name, p in named_parameters}
    reports = []
    for index, group in enumerate(param_groups):
        params = group_params[index] if group_params is not None else group["params"]
        group_names = [names.get(id(p), FUSED) for p in params]
        reports.append(ParamGroupReport(
            lr=float(group["lr"]), initial_lr=float(group["initial_lr"]) if "initial_lr" in group else None,
            weight_decay=float(group.get("weight_decay", 0.0)), tensors=len(group_names),
            parameters=sum(_numel(p) for p in params),
            modules=dict(Counter(name if name == FUSED else module_kind(name, keys) for name in group_names)),
            names=group_names))
    return reports


def trainable_by_module(named_parameters: Iterable[tuple[str, Any]], keys: ModuleKeys) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for name, parameter in named_parameters:
        if parameter.requires_grad:
            counts[module_kind(name, keys)] += _numel(parameter)
    return dict(counts)


def attention_backends(config: Any) -> dict[str, str | None]:
    """The attention implementation each part of the model really runs with."""
    parts = {"model": config}
    for part in ("text_config", "vision_config"):
        if getattr(config, part, None) is not None:
            parts[part.removesuffix("_config")] = getattr(config, part)
    return {part: getattr(sub, "_attn_implementation", None) for part, sub in parts.items()}
