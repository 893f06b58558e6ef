"""Our optimizer goes in through the host's own seam for custom optimizers, `create_custom_optimizer`.

LLaMA-Factory 0.9.5's trainers create their optimizer with
`self.optimizer = create_custom_optimizer(model, args, finetuning_args)` and fall back to transformers'
default when it returns None. transformers' DeepSpeed (`deepspeed_optim_sched`) and FSDP paths also create
the optimizer through `trainer.create_optimizer()`, so an optimizer returned here is the one ZeRO and FSDP
take over. We wrap that one function (each trainer module imported it by name) so that it returns the
optimizer with the projector's own groups when a run asks for `mm_projector_lr`, and the host's answer
otherwise. The wrap is pinned to the host version it was tested with (docs/design.md).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from .options import parse_training_options
from .projector_lr import ProjectorLrError, build_projector_optimizer

TESTED_HOST_VERSION = "0.9.5"
SEAM = "create_custom_optimizer"
_MARK = "__llava_lf_wrapped__"


def _projector_keys(model: Any) -> tuple[str, ...]:
    from .report import ModuleKeys

    config = getattr(model, "config", None)
    return ModuleKeys.for_model_type(getattr(config, "model_type", None)).projector


def _wrap(host_function):
    @functools.wraps(host_function)
    def create_custom_optimizer(model, training_args, finetuning_args):
        optimizer = host_function(model, training_args, finetuning_args)
        if "llava_lf" not in (training_args.report_to or []):
            return optimizer
        projector_lr = parse_training_options(training_args.optim_args, training_args.optim).mm_projector_lr
        if projector_lr is None:
            return optimizer
        if optimizer is not None:
            raise ProjectorLrError(f"mm_projector_lr cannot be combined with the host's own optimizer "
                                   f"({type(optimizer).__name__}: LoRA+, GaLore, APOLLO, BAdam, Adam-mini or Muon); "
                                   f"drop one of them")
        return build_projector_optimizer(model, training_args, _projector_keys(model), projector_lr)

    setattr(create_custom_optimizer, _MARK, host_function)
    return create_custom_optimizer


def install() -> int:
    """Wrap the host's `create_custom_optimizer` wherever it is bound; return how many bindings were wrapped."""
    import llamafactory
    from llamafactory.train import trainer_utils

    if llamafactory.__version__ != TESTED_HOST_VERSION:
        raise ProjectorLrError(f"mm_projector_lr enters through LLaMA-Factory {TESTED_HOST_VERSION}'s {SEAM}, and "
                               f"this is {llamafactory.__version__}; install llamafactory=={TESTED_HOST_VERSION}")
    host_function = getattr(trainer_utils, SEAM)
    host_function = getattr(host_function, _MARK, host_function)
    wrapped, count = _wrap(host_function), 0
    for name, module in list(sys.modules.items()):
        if name.startswith("llamafactory.train") and getattr(module, SEAM, None) is host_function:
            setattr(module, SEAM, wrapped)
            count += 1
    return count


def installed(module: Any) -> bool:
    return hasattr(getattr(module, SEAM, None), _MARK)
