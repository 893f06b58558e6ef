"""`mm_projector_lr`'s seam: wraps the host's `create_custom_optimizer`, through which every trainer (DeepSpeed and
FSDP included) gets its optimizer, so that it returns ours with the projector's groups (docs/design.md).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from . import Seam, calls_by_name, has_parameters

FEATURE = "mm_projector_lr (the projector's own learning rate)"
TRAINER = "transformers.trainer"  # where the optimizer's class, arguments and decay split come from

# (model, training_args, the host's own optimizer or None) -> the optimizer to use instead, or None to keep the host's
Builder = Callable[[Any, Any, Any], Any]

MODULE, FUNCTION = "llamafactory.train.trainer_utils", "create_custom_optimizer"
TRAINER_MODULE = "llamafactory.train.sft.trainer"  # the stage the recipes train; the other stages bind it alike
_MARK = "__llava_lf_wrapped__"


def _checks() -> list[str]:
    import importlib

    host_function = getattr(importlib.import_module(MODULE), FUNCTION)
    host_function = getattr(host_function, _MARK, host_function)
    trainer_module = importlib.import_module(TRAINER_MODULE)
    misfits = has_parameters(host_function, ["model", "training_args", "finetuning_args"])
    bound = getattr(trainer_module, FUNCTION, None)
    if getattr(bound, _MARK, bound) is not host_function:
        misfits.append(f"{TRAINER_MODULE} does not bind {FUNCTION} by name")
    return misfits + calls_by_name(trainer_module.CustomSeq2SeqTrainer.create_optimizer, FUNCTION)


def _reads_no_trainer_state(function: Callable) -> list[str]:
    import dis

    if any(step.opname.startswith("LOAD") and step.argval == "self" for step in dis.get_instructions(function)):
        return [f"{function.__qualname__} reads the trainer (llava_lf calls it without one)"]
    return []


def _decay_checks() -> list[str]:
    from transformers import Trainer

    return (has_parameters(Trainer.get_decay_parameter_names, ["self", "model"])
            + _reads_no_trainer_state(Trainer.get_decay_parameter_names))


def _optimizer_class_checks() -> list[str]:
    import inspect

    from transformers import Trainer

    if not isinstance(inspect.getattr_static(Trainer, "get_optimizer_cls_and_kwargs"), staticmethod):
        return ["Trainer.get_optimizer_cls_and_kwargs is not a static method"]
    return has_parameters(Trainer.get_optimizer_cls_and_kwargs, ["args", "model"])


SEAM = Seam(feature=FEATURE, symbol=f"{MODULE}.{FUNCTION}", module=TRAINER_MODULE, checks=_checks,
            ours="seams/optimizer.py wraps it where each trainer module bound it")
SEAMS = [
    SEAM,
    Seam(feature=FEATURE, symbol=f"{TRAINER}.Trainer.get_decay_parameter_names", module=TRAINER, checks=_decay_checks,
         ours="training/projector_lr.py: optimizer_for_run (the decay/no-decay split, without a trainer)"),
    Seam(feature=FEATURE, symbol=f"{TRAINER}.Trainer.get_optimizer_cls_and_kwargs", module=TRAINER,
         checks=_optimizer_class_checks, ours="training/projector_lr.py: optimizer_for_run"),
]


def _wrap(host_function, build: Builder):
    @functools.wraps(host_function)
    def create_custom_optimizer(model, training_args, finetuning_args):
        optimizer = host_function(model, training_args, finetuning_args)
        replacement = build(model, training_args, optimizer)
        return optimizer if replacement is None else replacement

    setattr(create_custom_optimizer, _MARK, host_function)
    return create_custom_optimizer


def install(build: Builder) -> int:
    """Wrap the host's `create_custom_optimizer` wherever it is bound, asking `build` first; return how many
    bindings were wrapped (a second install replaces the builder of the first).

    Raises `LlavaLfError` (naming the function and what differs) when this host lacks the shape: a run that set
    mm_projector_lr stops before its first step instead of training the projector at the wrong rate.
    """
    from llamafactory.train import trainer_utils

    for seam in SEAMS:
        seam.require()
    host_function = getattr(trainer_utils, FUNCTION)
    host_function = getattr(host_function, _MARK, host_function)
    wrapped, count = _wrap(host_function, build), 0
    for name, module in list(sys.modules.items()):
        bound = getattr(module, FUNCTION, None)
        if name.startswith("llamafactory.train") and getattr(bound, _MARK, bound) is host_function:
            setattr(module, FUNCTION, wrapped)
            count += 1
    return count


def uninstall() -> int:
    """Give every `llamafactory.train*` module back the host's function (tests restore what a run rebinds)."""
    count = 0
    for name, module in list(sys.modules.items()):
        bound = getattr(module, FUNCTION, None)
        if name.startswith("llamafactory.train") and hasattr(bound, _MARK):
            setattr(module, FUNCTION, getattr(bound, _MARK))
            count += 1
    return count


def installed(module: Any) -> bool:
    return hasattr(getattr(module, FUNCTION, None), _MARK)
