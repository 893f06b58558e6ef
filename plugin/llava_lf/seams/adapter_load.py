"""LoRA's `image_newline`'s seam: wraps the host's `init_adapter` where its model loader binds it, so that whatever
loads an adapter (export, chat, a later stage, resume) also gets the newline saved beside it (training/image_newline.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import Seam, calls_by_name, has_parameters

MODULE, FUNCTION, CALLER = "llamafactory.model.loader", "init_adapter", "load_model"
PARAMETERS = ["config", "model", "model_args", "finetuning_args", "is_trainable"]
_WRAPPED = "__llava_lf_adapter_load__"

# (model after the host's init_adapter, model_args) -> the model to use
After = Callable[[Any, Any], Any]


def _checks() -> list[str]:
    import importlib

    loader = importlib.import_module(MODULE)
    host = getattr(getattr(loader, FUNCTION), _WRAPPED, getattr(loader, FUNCTION))
    misfits = has_parameters(host, PARAMETERS) + calls_by_name(getattr(loader, CALLER), FUNCTION)
    from llamafactory.hparams import ModelArguments

    if "adapter_name_or_path" not in getattr(ModelArguments, "__dataclass_fields__", {}):
        misfits.append("ModelArguments has no adapter_name_or_path")
    return misfits


FEATURE = "LLaVA-NeXT's image_newline saved and restored with a LoRA adapter"
SEAM = Seam(feature=FEATURE, symbol=f"{MODULE}.{FUNCTION}", module=MODULE, checks=_checks,
            ours="seams/adapter_load.py wraps it; training/image_newline.py: restore_from_adapters")


def _wrap(host_function, after: After):
    @functools.wraps(host_function)
    def init_adapter(config, model, model_args, finetuning_args, is_trainable):
        model = host_function(config, model, model_args, finetuning_args, is_trainable)
        return after(model, model_args)

    setattr(init_adapter, _WRAPPED, host_function)
    return init_adapter


def install(after: After) -> bool:
    """Wrap the host function when it has the shape we rely on; say once (by feature) when it does not."""
    import importlib

    misfits = SEAM.check()
    if misfits:
        SEAM.say_once(misfits)
        return False
    loader = importlib.import_module(MODULE)
    host = getattr(loader, FUNCTION)
    setattr(loader, FUNCTION, _wrap(getattr(host, _WRAPPED, host), after))
    return True
