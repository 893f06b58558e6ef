"""Which part of a composite model a parameter belongs to: projector, vision tower or language model."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def name_matcher(keys: Iterable[str]) -> Callable[[str], bool]:
    """True for parameter names inside any of the modules `keys` (dotted paths such as `multi_modal_projector`)."""
    pattern = re.compile("|".join(rf"(?:^|\.){re.escape(key)}(?:\.|$)" for key in keys))
    return lambda name: bool(pattern.search(name))


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

    @classmethod
    def of(cls, model: Any) -> ModuleKeys:
        return cls.for_model_type(getattr(getattr(model, "config", None), "model_type", None))


def module_kind(name: str, keys: ModuleKeys) -> str:
    """`projector`, `vision_tower` or `language_model`, with ` (LoRA)` for adapter weights."""
    if name_matcher(keys.projector)(name):
        kind = "projector"
    elif name_matcher(keys.vision)(name):
        kind = "vision_tower"
    else:
        kind = "language_model"
    return f"{kind} (LoRA)" if ".lora_" in name else kind
