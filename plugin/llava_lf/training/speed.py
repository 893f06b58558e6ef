"""Stage-2 speed options (`recompute_layers`, `sdpa_backend`, `compile_layers`), each off unless its `optim_args` key
is set; docs/performance.md says what each does and how it was checked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from llava_lf.errors import LlavaLfError


@dataclass(frozen=True)
class AppliedSpeedOptions:
    recomputed_layers: int | None = None  # decoder layers still checkpointed
    decoder_layers: int = 0
    sdpa_backend: str | None = None
    compiled_layers: int = 0


def decoder_layers(model: Any) -> list[Any]:
    """The language model's decoder layers: the longest ModuleList named `layers` outside the vision tower."""
    from torch import nn

    found = [module for name, module in model.named_modules()
             if name.split(".")[-1] == "layers" and isinstance(module, nn.ModuleList) and "vision" not in name]
    return list(max(found, key=len)) if found else []


def recompute_only_first(model: Any, count: int) -> int:
    """Switch checkpointing off for every decoder layer after the first `count`; return how many keep it."""
    layers = decoder_layers(model)
    if not any(getattr(layer, "gradient_checkpointing", False) for layer in layers):
        raise LlavaLfError("recompute_layers is set but gradient checkpointing is off "
                               "(disable_gradient_checkpointing: true); drop one of them")
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index < count and layer.gradient_checkpointing
    return sum(bool(layer.gradient_checkpointing) for layer in layers)


def sdpa_backends(name: str, device_type: str) -> list[Any]:
    """The SDPA kernels `name` allows on `device_type` (cuDNN attention exists only on CUDA)."""
    from torch.nn.attention import SDPBackend

    table = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    if name == "cudnn" and device_type != "cuda":
        raise LlavaLfError(f"sdpa_backend=cudnn needs a CUDA device; this run is on {device_type}")
    return [table[name]]


def attention_implementation(config: Any) -> str | None:
    text = getattr(config, "text_config", config)
    return getattr(text, "_attn_implementation", None)


def select_sdpa(name: str, config: Any, device_type: str, stack: contextlib.ExitStack) -> str:
    """Restrict SDPA to one kernel until `stack` closes; refuse when the model does not use SDPA."""
    from torch.nn.attention import sdpa_kernel

    implementation = attention_implementation(config)
    if implementation != "sdpa":
        raise LlavaLfError(f"sdpa_backend={name} needs SDPA attention, and the model uses {implementation} "
                               f"(set flash_attn: sdpa; fa2 needs the flash-attn package and ignores this option)")
    stack.enter_context(sdpa_kernel(sdpa_backends(name, device_type)))
    return name


def compile_decoder_layers(model: Any, backend: str = "inductor") -> int:
    """`torch.compile` each decoder layer in place (`Module.compile`); return how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend)
    return len(layers)


def apply_speed_options(options: Any, model: Any, device_type: str, stack: contextlib.ExitStack) -> AppliedSpeedOptions:
    config = getattr(model, "config", None)
    layers = decoder_layers(model)
    recomputed = recompute_only_first(model, options.recompute_layers) if options.recompute_layers is not None else None
    backend = select_sdpa(options.sdpa_backend, config, device_type, stack) if options.sdpa_backend else None
    compiled = compile_decoder_layers(model) if options.compile_layers else 0
    return AppliedSpeedOptions(recomputed, len(layers), backend, compiled)
