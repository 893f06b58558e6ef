"""A learning rate of its own for the multimodal projector, as optimizer groups that exist from the optimizer's
creation, so DeepSpeed, FSDP, the scheduler and resume treat them as the host's own (docs/recipe.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llava_lf.errors import LlavaLfError

from .model_parts import ModuleKeys, name_matcher
from .options import parse_training_options

# Keys of `get_optimizer_cls_and_kwargs` that mean the optimizer brings its own parameter groups.
_SELF_GROUPING_KEYS = ("params", "model", "optimizer_dict")


def projector_param_groups(named_parameters: Iterable[tuple[str, Any]], decay_names: Iterable[str],
                           projector_keys: Iterable[str], projector_lr: float,
                           weight_decay: float) -> list[dict]:
    """transformers' two groups with the projector's trainable parameters moved to groups at `projector_lr`, in the
    order host decay, host no-decay, projector decay, projector no-decay (an empty projector group left out)."""
    keys = list(projector_keys)
    is_projector, decay = name_matcher(keys), set(decay_names)
    trainable = [(name, p) for name, p in named_parameters if p.requires_grad]
    projector = [name for name, _ in trainable if is_projector(name)]
    if not projector:
        raise LlavaLfError(f"mm_projector_lr is set but no parameter of {'/'.join(keys)} is trained; for LoRA add "
                               f"`additional_target: {keys[0]}`, for full or freeze tuning set "
                               f"`freeze_multi_modal_projector: false`, or drop mm_projector_lr")
    if len(projector) == len(trainable):
        raise LlavaLfError("mm_projector_lr is set but the projector is the only trained module (stage 1); "
                               "set learning_rate instead and drop mm_projector_lr")
    groups = []
    for at_projector_lr in (False, True):
        for decays in (True, False):
            params = [p for name, p in trainable if is_projector(name) == at_projector_lr and (name in decay) == decays]
            if at_projector_lr and not params:
                continue
            group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
            groups.append({**group, "lr": projector_lr} if at_projector_lr else group)
    return groups


def build_projector_optimizer(model: Any, training_args: Any, projector_keys: Iterable[str],
                              projector_lr: float) -> Any:
    """The optimizer transformers' `Trainer.create_optimizer` would build, with the projector's own groups."""
    from transformers import Trainer

    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    self_grouping = [key for key in _SELF_GROUPING_KEYS if key in optimizer_kwargs]
    if self_grouping or not isinstance(optimizer_cls, type):
        raise LlavaLfError(f"mm_projector_lr needs an optimizer built from parameter groups; optim="
                               f"{training_args.optim} builds its own; use adamw_torch (the default)")
    decay_names = Trainer.get_decay_parameter_names(None, model)  # uses no state of the trainer
    groups = projector_param_groups(model.named_parameters(), decay_names, projector_keys, projector_lr,
                                    training_args.weight_decay)
    return optimizer_cls(groups, **optimizer_kwargs)


def check_projector_rates(param_groups: list[dict], projector_lr: float) -> None:
    """Refuse a run whose optimizer has no group at `mm_projector_lr` (our optimizer was not the one built)."""
    rates = [group.get("initial_lr", group.get("lr")) for group in param_groups]
    if projector_lr not in rates:
        raise LlavaLfError(f"mm_projector_lr={projector_lr:g} is set but no optimizer group has that rate "
                               f"(group rates: {rates}); another optimizer replaced ours: drop loraplus_lr_ratio, "
                               f"GaLore/APOLLO/BAdam/Adam-mini/Muon, or a DeepSpeed `optimizer` section")


def optimizer_for_run(model: Any, training_args: Any, host_optimizer: Any) -> Any:
    """What the optimizer seam returns: ours with the projector's groups when this run set mm_projector_lr
    (and reports to llava_lf), else None to keep the host's answer."""
    if "llava_lf" not in (training_args.report_to or []):
        return None
    projector_lr = parse_training_options(training_args.optim_args, training_args.optim).mm_projector_lr
    if projector_lr is None:
        return None
    if host_optimizer is not None:
        raise LlavaLfError(f"mm_projector_lr cannot be combined with the host's own optimizer "
                               f"({type(host_optimizer).__name__}: LoRA+, GaLore, APOLLO, BAdam, Adam-mini or Muon); "
                               f"drop one of them")
    return build_projector_optimizer(model, training_args, ModuleKeys.of(model).projector, projector_lr)
