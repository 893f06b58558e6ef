"""A learning rate of its own for the multimodal projector, applied to the optimizer the host built.

The host creates one AdamW with transformers' two groups (decay / no decay). When training begins we move
the projector's parameters out of each group into a group of their own with `mm_projector_lr` and the same
other settings, and give the LambdaLR scheduler a matching base rate and the same schedule, so projector
and language model follow one warmup/cosine curve at their two peaks (LLaVA-1.5 LoRA: 2e-5 and 2e-4).

Resuming: the host re-creates its own two groups and loads `optimizer.pt` into them before any callback
runs, so the optimizer's state dict is always written in the host's layout (a state-dict hook maps it back);
each parameter's Adam moments travel with it, and the split is re-applied at the start of the resumed run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llava_lf.errors import LlavaLfError

if TYPE_CHECKING:
    import torch


class ProjectorLrError(LlavaLfError):
    """The projector learning rate cannot be applied to this run; the message says why and what to change."""


@dataclass(frozen=True)
class SplitGroup:
    host_group: int  # the host group the projector parameters came from
    group: int  # their own group's index in the optimizer
    names: tuple[str, ...]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper (its state_dict hooks are the ones that run)."""
    import torch

    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def unwrap_scheduler(scheduler: Any) -> Any:
    while hasattr(scheduler, "scheduler") and not hasattr(scheduler, "lr_lambdas"):
        scheduler = scheduler.scheduler
    return scheduler


def name_matcher(keys: Iterable[str]) -> Callable[[str], bool]:
    """True for parameter names inside any of the modules `keys` (dotted paths such as `multi_modal_projector`)."""
    pattern = re.compile("|".join(rf"(?:^|\.){re.escape(key)}(?:\.|$)" for key in keys))
    return lambda name: bool(pattern.search(name))


def _follow(schedule: Callable[[int], float]) -> Callable[[int], float]:
    # A plain function, not the host's functools.partial: LambdaLR saves no state for functions, so a
    # checkpoint's scheduler state still loads into the host's freshly built two-group scheduler.
    def projector_schedule(step: int) -> float:
        return schedule(step)

    return projector_schedule


def _host_layout_hook(host_layout: list[list[torch.Tensor]]):
    """State-dict post-hook: rewrite the optimizer state as if the projector had never left its host group."""

    def to_host_layout(optimizer, state_dict: dict) -> dict:
        live_index = {id(p): index for index, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
        host_params = [p for group in host_layout for p in group]
        to_host = {live_index[id(p)]: index for index, p in enumerate(host_params)}
        groups, offset = [], 0
        for index, params in enumerate(host_layout):
            saved = {key: value for key, value in state_dict["param_groups"][index].items() if key != "param_names"}
            saved["params"] = list(range(offset, offset + len(params)))
            offset += len(params)
            groups.append(saved)
        state = {to_host[key]: value for key, value in state_dict["state"].items()}
        return {**state_dict, "state": state, "param_groups": groups}

    return to_host_layout


def split_projector_groups(optimizer: Any, scheduler: Any, named_parameters: Iterable[tuple[str, Any]],
                           projector_keys: Iterable[str], projector_lr: float) -> list[SplitGroup]:
    """Give the projector's trainable parameters their own groups at `projector_lr`; return what moved."""
    torch_optimizer, lambda_lr = unwrap_optimizer(optimizer), unwrap_scheduler(scheduler)
    if not hasattr(lambda_lr, "lr_lambdas") or not hasattr(lambda_lr, "base_lrs"):
        raise ProjectorLrError(f"mm_projector_lr needs one of transformers' LambdaLR schedules (linear, cosine, "
                               f"constant, ...); lr_scheduler is {type(lambda_lr).__name__}")
    keys = list(projector_keys)
    is_projector = name_matcher(keys)
    names = {id(p): name for name, p in named_parameters if p.requires_grad}
    trainable = set(names)
    in_optimizer = {id(p) for group in torch_optimizer.param_groups for p in group["params"]}
    projector_ids = {pid for pid, name in names.items() if is_projector(name)}
    if not projector_ids:
        raise ProjectorLrError(f"mm_projector_lr is set but no parameter of {'/'.join(keys)} is trained; for LoRA add "
                               f"`additional_target: {keys[0]}`, for full or freeze tuning set "
                               f"`freeze_multi_modal_projector: false`, or drop mm_projector_lr")
    if not projector_ids <= in_optimizer:
        raise ProjectorLrError("mm_projector_lr: the projector's parameters are not in the optimizer as themselves "
                               "(DeepSpeed ZeRO and FSDP with flattened parameters fuse them); train without "
                               "DeepSpeed/FSDP, or set fsdp use_orig_params, or drop mm_projector_lr")
    if trainable == projector_ids:
        raise ProjectorLrError("mm_projector_lr is set but the projector is the only trained module (stage 1); "
                               "set learning_rate instead and drop mm_projector_lr")

    n_host = len(torch_optimizer.param_groups)
    if len(lambda_lr.lr_lambdas) != n_host:
        raise ProjectorLrError(f"the scheduler has {len(lambda_lr.lr_lambdas)} schedules for {n_host} optimizer "
                               f"groups; the projector groups were already split (is the callback listed twice?)")
    host_layout = [list(group["params"]) for group in torch_optimizer.param_groups]
    # A resumed run loads the scheduler state saved with the projector groups: keep only the host's rates.
    lambda_lr.base_lrs = list(lambda_lr.base_lrs[:n_host])
    step = lambda_lr.last_epoch
    moved: list[SplitGroup] = []
    for index in range(n_host):
        group = torch_optimizer.param_groups[index]
        projector = [p for p in group["params"] if id(p) in projector_ids]
        if not projector:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in projector_ids]
        schedule = lambda_lr.lr_lambdas[index]
        settings = {key: value for key, value in group.items() if key not in ("params", "param_names")}
        torch_optimizer.add_param_group({**settings, "params": projector, "initial_lr": projector_lr,
                                         "lr": projector_lr * schedule(step)})
        lambda_lr.base_lrs.append(projector_lr)
        lambda_lr.lr_lambdas.append(_follow(schedule))
        moved.append(SplitGroup(index, len(torch_optimizer.param_groups) - 1, tuple(names[id(p)] for p in projector)))
    torch_optimizer.register_state_dict_post_hook(_host_layout_hook(host_layout))
    return moved
