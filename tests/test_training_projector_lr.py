"""The projector's own learning rate on a real AdamW + transformers cosine schedule: its groups, its share of
the schedule, and a resume through the host's two-group layout that continues bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from llava_lf.host.training.projector_lr import ProjectorLrError, split_projector_groups

LR, PROJECTOR_LR = 2e-4, 2e-5


class TinyComposite(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.ModuleDict({
            "multi_modal_projector": nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 6)),
            "language_model": nn.Linear(6, 5),
            "vision_tower": nn.Linear(3, 4),
        })
        self.model["vision_tower"].requires_grad_(False)

    def forward(self, x):
        return self.model["language_model"](self.model["multi_modal_projector"](self.model["vision_tower"](x)))


def _host_optimizer(model):
    """What the host builds: transformers' decay / no-decay groups, AdamW, a warmup + cosine LambdaLR."""
    from transformers import get_cosine_schedule_with_warmup

    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for name, p in trainable if not name.endswith("bias")], "weight_decay": 0.01},
              {"params": [p for name, p in trainable if name.endswith("bias")], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=LR)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=12)


def _step(model, optimizer, scheduler, seed):
    torch.manual_seed(seed)
    model(torch.randn(8, 3)).square().mean().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_projector_gets_its_own_groups_on_the_same_schedule():
    model = TinyComposite()
    optimizer, scheduler = _host_optimizer(model)
    moved = split_projector_groups(optimizer, scheduler, model.named_parameters(), ["multi_modal_projector"],
                                   PROJECTOR_LR)
    assert [(split.host_group, split.group) for split in moved] == [(0, 2), (1, 3)]
    assert moved[0].names == ("model.multi_modal_projector.0.weight", "model.multi_modal_projector.2.weight")
    assert [len(group["params"]) for group in optimizer.param_groups] == [1, 1, 2, 2]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0, 0.01, 0.0]
    assert [group["initial_lr"] for group in optimizer.param_groups] == [LR, LR, PROJECTOR_LR, PROJECTOR_LR]
    for step in range(12):
        _step(model, optimizer, scheduler, step)
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs[2] == pytest.approx(lrs[0] * PROJECTOR_LR / LR, rel=1e-9, abs=1e-15)
        assert lrs[3] == lrs[2] and lrs[1] == lrs[0]
    assert scheduler.get_last_lr()[2] == optimizer.param_groups[2]["lr"]


def test_resume_through_the_host_layout_continues_bit_for_bit():
    model = TinyComposite()
    optimizer, scheduler = _host_optimizer(model)
    split_projector_groups(optimizer, scheduler, model.named_parameters(), ["multi_modal_projector"], PROJECTOR_LR)
    for step in range(4):
        _step(model, optimizer, scheduler, step)
    saved_optimizer, saved_scheduler = copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())
    assert len(saved_optimizer["param_groups"]) == 2  # the host's layout, so the host can load it

    resumed = copy.deepcopy(model)  # a new process: new tensors, the host's fresh two groups
    resumed_optimizer, resumed_scheduler = _host_optimizer(resumed)
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed_scheduler.load_state_dict(saved_scheduler)
    split_projector_groups(resumed_optimizer, resumed_scheduler, resumed.named_parameters(),
                           ["multi_modal_projector"], PROJECTOR_LR)
    assert [g["lr"] for g in resumed_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    for step in range(4, 12):
        _step(model, optimizer, scheduler, step)
        _step(resumed, resumed_optimizer, resumed_scheduler, step)
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_projector_lr_refuses_runs_it_cannot_apply_to():
    model = TinyComposite()
    model.model["multi_modal_projector"].requires_grad_(False)
    optimizer, scheduler = _host_optimizer(model)
    with pytest.raises(ProjectorLrError, match="no parameter of multi_modal_projector is trained.*additional_target"):
        split_projector_groups(optimizer, scheduler, model.named_parameters(), ["multi_modal_projector"], PROJECTOR_LR)

    stage1 = TinyComposite()
    stage1.model["language_model"].requires_grad_(False)
    optimizer, scheduler = _host_optimizer(stage1)
    with pytest.raises(ProjectorLrError, match="only trained module .*set learning_rate instead"):
        split_projector_groups(optimizer, scheduler, stage1.named_parameters(), ["multi_modal_projector"], PROJECTOR_LR)

    model = TinyComposite()
    optimizer, _ = _host_optimizer(model)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ProjectorLrError, match="needs one of transformers' LambdaLR schedules"):
        split_projector_groups(optimizer, plateau, model.named_parameters(), ["multi_modal_projector"], PROJECTOR_LR)
