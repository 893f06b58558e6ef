"""LLaVA-NeXT's `image_newline` under LoRA: trained with the language model, saved beside the adapter, restored
wherever the host loads that adapter (export, chat, a later stage, resume). docs/design.md says why.

It is a bare `nn.Parameter` of the model, not a module, so PEFT can neither wrap it (`modules_to_save`,
the host's `additional_target`) nor save it: PEFT freezes it and writes only adapter weights. Full and freeze
tuning need none of this: the host leaves it trainable (it matches none of the composite keys) and saves the model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

NAME = "image_newline"
FILE = "llava_lf_image_newline.safetensors"  # in the adapter's folder and in each checkpoint-N


def _newline(model: Any) -> torch.nn.Parameter | None:
    found = [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == NAME]
    return found[0] if len(found) == 1 else None


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def _gathered(parameter: torch.nn.Parameter, modifier_rank: int | None = None):
    """ZeRO-3 keeps a partition on each rank: gather the whole tensor (every rank must take part)."""
    if not hasattr(parameter, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([parameter], modifier_rank=modifier_rank)


def train_under_lora(model: Any) -> bool:
    """Under LoRA, make `image_newline` trainable (at the base rate, with the language model, as LLaVA-NeXT trains
    it) when the language model trains; return whether it was changed."""
    newline = _newline(model)
    if newline is None or newline.requires_grad or not _is_peft(model):
        return False
    if not any(p.requires_grad for name, p in model.named_parameters() if ".lora_" in name):
        return False
    newline.requires_grad_(True)
    if not hasattr(newline, "ds_id") and newline.dtype in (torch.float16, torch.bfloat16):
        newline.data = newline.data.float()  # as the host upcasts every trainable parameter outside ZeRO-3
    return True


def save(model: Any, directory: str | Path, write: bool) -> Path | None:
    """Write a LoRA run's `image_newline` into `directory` (every rank calls it under ZeRO-3; `write` on one)."""
    newline = _newline(model)
    if newline is None or not newline.requires_grad or not _is_peft(model):
        return None
    from safetensors.torch import save_file

    with _gathered(newline):
        tensor = newline.detach().to("cpu", copy=True).contiguous()
    if not write:
        return None
    path = Path(directory) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({NAME: tensor}, str(path))
    return path


def restore(model: Any, directory: str | Path) -> bool:
    """Load `image_newline` saved by `save` from `directory` into `model` (a PEFT model or a merged one)."""
    path = Path(directory) / FILE
    newline = _newline(model)
    if newline is None or not path.is_file():
        return False
    from safetensors.torch import load_file

    saved = load_file(str(path))[NAME]
    with _gathered(newline, modifier_rank=0), torch.no_grad():
        if newline.numel():  # a ZeRO-3 rank outside the modifier holds nothing to write
            newline.copy_(saved.to(newline.dtype))
    return True


def restore_from_adapters(model: Any, model_args: Any) -> Any:
    """After the host's `init_adapter`: each adapter folder's `image_newline`, the last one winning (as the adapters
    are applied in order)."""
    for directory in getattr(model_args, "adapter_name_or_path", None) or []:
        restore(model, directory)
    return model
