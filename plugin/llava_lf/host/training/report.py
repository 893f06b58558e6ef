"""`llava_lf_training.json`: what a run trains, at which learning rate, with which attention and data order."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORT_NAME = "llava_lf_training.json"


@dataclass(frozen=True)
class ModuleKeys:
    """Where a composite model keeps its parts (the host's COMPOSITE_MODELS entry for its model type)."""

    projector: tuple[str, ...] = ("multi_modal_projector",)
    vision: tuple[str, ...] = ("vision_tower",)

    @classmethod
    def for_model_type(cls, model_type: str | None) -> ModuleKeys:
        from llamafactory.model.model_utils.visual import COMPOSITE_MODELS

        composite = COMPOSITE_MODELS.get(model_type or "")
        if composite is None:
            return cls()
        return cls(tuple(composite.projector_keys), tuple(composite.vision_model_keys))


def module_kind(name: str, keys: ModuleKeys) -> str:
    """`projector`, `vision_tower` or `language_model`, with ` (LoRA)` for adapter weights."""
    from .projector_lr import name_matcher

    if name_matcher(keys.projector)(name):
        kind = "projector"
    elif name_matcher(keys.vision)(name):
        kind = "vision_tower"
    else:
        kind = "language_model"
    return f"{kind} (LoRA)" if ".lora_" in name else kind


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


def describe_param_groups(param_groups: Iterable[dict], named_parameters: Iterable[tuple[str, Any]],
                          keys: ModuleKeys) -> list[ParamGroupReport]:
    names = {id(p): name for name, p in named_parameters}
    reports = []
    for group in param_groups:
        group_names = [names.get(id(p), FUSED) for p in group["params"]]
        reports.append(ParamGroupReport(
            lr=float(group["lr"]), initial_lr=float(group["initial_lr"]) if "initial_lr" in group else None,
            weight_decay=float(group.get("weight_decay", 0.0)), tensors=len(group_names),
            parameters=sum(_numel(p) for p in group["params"]),
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
