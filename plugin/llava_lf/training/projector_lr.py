"""Learning rates of their own for the multimodal projector (`mm_projector_lr`) and the vision tower
(`mm_vision_tower_lr`), as optimizer groups that exist from the optimizer's creation, so DeepSpeed, FSDP, the
scheduler and resume treat them as the host's own (docs/recipe.md, docs/design.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llava_lf.errors import LlavaLfError

from .model_parts import ModuleKeys, name_matcher
from .options import TrainingOptions, parse_training_options

# Keys of `get_optimizer_cls_and_kwargs` that mean the optimizer brings its own parameter groups.
_SELF_GROUPING_KEYS = ("params", "model", "optimizer_dict")


@dataclass(frozen=True)
class ModuleRate:
    """One module's own learning rate: the option that set it, the module's names, and how to train it."""

    option: str  # mm_projector_lr or mm_vision_tower_lr
    keys: tuple[str, ...]  # the module's dotted names (the host's COMPOSITE_MODELS keys)
    lr: float
    fix: str  # what makes the module trained when none of its parameters is


def module_rates(options: TrainingOptions, keys: ModuleKeys) -> tuple[ModuleRate, ...]:
    """The rates this run set, projector first (the order of their optimizer groups)."""
    rates = []
    if options.mm_projector_lr is not None:
        rates.append(ModuleRate("mm_projector_lr", keys.projector, options.mm_projector_lr,
                                f"for LoRA add `additional_target: {keys.projector[0]}`, for full or freeze tuning set "
                                f"`freeze_multi_modal_projector: false`"))
    if options.mm_vision_tower_lr is not None:
        rates.append(ModuleRate("mm_vision_tower_lr", keys.vision, options.mm_vision_tower_lr,
                                "set `freeze_vision_tower: false` (with LoRA, `lora_target: all` then adapts the "
                                "tower's linear layers)"))
    return tuple(rates)


def module_param_groups(named_parameters: Iterable[tuple[str, Any]], decay_names: Iterable[str],
                        rates: Iterable[ModuleRate], weight_decay: float) -> list[dict]:
    """transformers' two groups with each rated module's trainable parameters moved to groups at its rate, in the
    order host decay, host no-decay, then per module decay, no-decay (an empty module group left out)."""
    rates, decay = list(rates), set(decay_names)
    trainable = [(name, p) for name, p in named_parameters if p.requires_grad]
    matchers = [name_matcher(rate.keys) for rate in rates]

    def owner(name: str) -> int | None:  # the first rated module holding the parameter; None: base rate
        return next((index for index, matches in enumerate(matchers) if matches(name)), None)

    owners = [owner(name) for name, _ in trainable]
    for index, rate in enumerate(rates):
        if index not in owners:
            raise LlavaLfError(f"{rate.option} is set but no parameter of {'/'.join(rate.keys)} is trained; "
                               f"{rate.fix}, or drop {rate.option}")
    if rates and None not in owners:
        modules = "/".join(key for rate in rates for key in rate.keys)
        options = ", ".join(rate.option for rate in rates)
        raise LlavaLfError(f"{options} is set but {modules} is the only trained module (stage 1); set learning_rate "
                           f"instead and drop {options}")
    groups = []
    for index in (None, *range(len(rates))):
        for decays in (True, False):
            params = [p for (name, p), at in zip(trainable, owners, strict=True)
                      if at == index and (name in decay) == decays]
            if index is not None and not params:
                continue
            group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
            groups.append(group if index is None else {**group, "lr": rates[index].lr})
    return groups


def projector_param_groups(named_parameters: Iterable[tuple[str, Any]], decay_names: Iterable[str],
                           projector_keys: Iterable[str], projector_lr: float,
                           weight_decay: float) -> list[dict]:
    """`module_param_groups` with the projector's rate only."""
    keys = tuple(projector_keys)
    rate = module_rates(TrainingOptions(mm_projector_lr=projector_lr), ModuleKeys(projector=keys))
    return module_param_groups(named_parameters, decay_names, rate, weight_decay)


def build_module_optimizer(model: Any, training_args: Any, rates: Iterable[ModuleRate]) -> Any:
    """The optimizer transformers' `Trainer.create_optimizer` would build, with each rated module's own groups."""
    from transformers import Trainer

    rates = list(rates)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    self_grouping = [key for key in _SELF_GROUPING_KEYS if key in optimizer_kwargs]
    if self_grouping or not isinstance(optimizer_cls, type):
        raise LlavaLfError(f"{', '.join(rate.option for rate in rates)} need(s) an optimizer built from parameter "
                           f"groups; optim={training_args.optim} builds its own; use adamw_torch (the default)")
    decay_names = Trainer.get_decay_parameter_names(None, model)  # uses no state of the trainer
    groups = module_param_groups(model.named_parameters(), decay_names, rates, training_args.weight_decay)
    return optimizer_cls(groups, **optimizer_kwargs)


def build_projector_optimizer(model: Any, training_args: Any, projector_keys: Iterable[str],
                              projector_lr: float) -> Any:
    """`build_module_optimizer` with the projector's rate only."""
    rates = module_rates(TrainingOptions(mm_projector_lr=projector_lr), ModuleKeys(projector=tuple(projector_keys)))
    return build_module_optimizer(model, training_args, rates)


def check_module_rates(param_groups: list[dict], rates: Iterable[ModuleRate]) -> None:
    """Refuse a run whose optimizer has no group at a module's rate (our optimizer was not the one built)."""
    found = [group.get("initial_lr", group.get("lr")) for group in param_groups]
    for rate in rates:
        if rate.lr not in found:
            raise LlavaLfError(f"{rate.option}={rate.lr:g} is set but no optimizer group has that rate "
                               f"(group rates: {found}); another optimizer replaced ours: drop loraplus_lr_ratio, "
                               f"GaLore/APOLLO/BAdam/Adam-mini/Muon, or a DeepSpeed `optimizer` section")


def check_projector_rates(param_groups: list[dict], projector_lr: float) -> None:
    check_module_rates(param_groups, module_rates(TrainingOptions(mm_projector_lr=projector_lr), ModuleKeys()))


def optimizer_for_run(model: Any, training_args: Any, host_optimizer: Any) -> Any:
    """What the optimizer seam returns: ours with the rated modules' groups when this run set mm_projector_lr or
    mm_vision_tower_lr (and reports to llava_lf), else None to keep the host's answer."""
    if "llava_lf" not in (training_args.report_to or []):
        return None
    options = parse_training_options(training_args.optim_args, training_args.optim)
    rates = module_rates(options, ModuleKeys.of(model))
    if not rates:
        return None
    if host_optimizer is not None:
        raise LlavaLfError(f"{', '.join(rate.option for rate in rates)} cannot be combined with the host's own "
                           f"optimizer ({type(host_optimizer).__name__}: LoRA+, GaLore, APOLLO, BAdam, Adam-mini or "
                           f"Muon); drop one of them")
    return build_module_optimizer(model, training_args, rates)
