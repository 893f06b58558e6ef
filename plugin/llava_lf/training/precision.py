"""Refuse, before the first step, a run whose float16 weights cannot train where it runs: on a CPU without mixed
precision the host keeps the frozen weights in float16 and the trainable ones in float32, and the first matrix
product fails ("expected m1 and m2 to have the same dtype ... Half != float"). The `llava1_5_*` assemble presets
write float16, as Vicuna and llava-hf ship."""

from __future__ import annotations

from typing import Any

from llava_lf.errors import LlavaLfError


def check_precision(model: Any, args: Any) -> None:
    """Raise with the fix when float16 weights meet a CPU run with bf16 and fp16 off."""
    if model is None or args.device.type != "cpu" or args.fp16 or args.bf16:
        return
    half = [name for name, param in model.named_parameters() if str(param.dtype) == "torch.float16"]
    if half:
        raise LlavaLfError(
            f"the model's weights are float16 ({len(half)} tensors, e.g. {half[0]}) and this run trains on the CPU "
            f"without mixed precision (bf16 and fp16 off), where float16 and float32 cannot be multiplied (the first "
            f"step would stop with 'expected m1 and m2 to have the same dtype'); for a CPU run assemble the model in "
            f"float32 (`llava-lf assemble ... --dtype float32`), or train on a GPU with `bf16: true`")
