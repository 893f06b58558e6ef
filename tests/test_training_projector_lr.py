"""The projector's own learning rate, built into the optimizer at creation.

Parity: the optimizer built with the projector's groups from the start trains exactly like the previous
method (the host's two groups, the projector moved to groups of its own once training began): the same
learning rate for every parameter at every step, the same losses and weights bit for bit. Resume through
`optimizer.pt` continues bit for bit. Through the real host: LLaMA-Factory's trainer creates our optimizer
via its `create_custom_optimizer` seam, and so does the path that hands the optimizer to DeepSpeed."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments, get_scheduler

from llava_lf.errors import LlavaLfError
from llava_lf.training.projector_lr import (
    build_projector_optimizer,
    check_projector_rates,
    projector_param_groups,
)

pytestmark = pytest.mark.host

LR, PROJECTOR_LR, STEPS = 2e-4, 2e-5, 12


class TinyComposite(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.ModuleDict({
            "multi_modal_projector": nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 6)),
            "language_model": nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5)),
            "vision_tower": nn.Linear(3, 4),
        })
        self.model["vision_tower"].requires_grad_(False)

    def forward(self, x):
        return self.model["language_model"](self.model["multi_modal_projector"](self.model["vision_tower"](x)))


def _args(tmp_path, **extra) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), learning_rate=LR, weight_decay=0.01, lr_scheduler_type="cosine",
                             warmup_steps=2, report_to=[], use_cpu=True, **extra)


def _scheduler(optimizer):
    return get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=STEPS)


def _previous_method(model, args):
    """What the plugin did before: transformers' two groups, then the projector moved out at train begin."""
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    decay = set(Trainer.get_decay_parameter_names(None, model))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = optimizer_cls([{"params": [p for n, p in trainable if n in decay], "weight_decay": 0.01},
                               {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}], **kwargs)
    scheduler = _scheduler(optimizer)
    for index in range(2):
        group = optimizer.param_groups[index]
        projector = [p for p in group["params"] if any(p is q for q in model.model["multi_modal_projector"].parameters())]
        group["params"] = [p for p in group["params"] if all(p is not q for q in projector)]
        optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": projector,
                                   "initial_lr": PROJECTOR_LR, "lr": PROJECTOR_LR * scheduler.lr_lambdas[index](0)})
        scheduler.base_lrs.append(PROJECTOR_LR)
        scheduler.lr_lambdas.append(scheduler.lr_lambdas[index])
    return optimizer, scheduler


def _step(model, optimizer, scheduler, seed) -> float:
    torch.manual_seed(seed)
    loss = model(torch.randn(8, 3)).square().mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


def _rate_by_parameter(model, optimizer) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_groups_are_the_host_groups_with_the_projector_taken_out():
    model = TinyComposite()
    groups = projector_param_groups(model.named_parameters(), Trainer.get_decay_parameter_names(None, model),
                                    ["multi_modal_projector"], PROJECTOR_LR, 0.01)
    assert [(len(g["params"]), g["weight_decay"], g.get("lr")) for g in groups] == [
        (1, 0.01, None), (3, 0.0, None), (2, 0.01, PROJECTOR_LR), (2, 0.0, PROJECTOR_LR)]


def test_same_rates_losses_and_weights_as_the_previous_method(tmp_path):
    args = _args(tmp_path)
    before, now = TinyComposite(), TinyComposite()
    old_optimizer, old_scheduler = _previous_method(before, args)
    optimizer = build_projector_optimizer(now, args, ["multi_modal_projector"], PROJECTOR_LR)
    scheduler = _scheduler(optimizer)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == LR
    for step in range(STEPS):
        assert _rate_by_parameter(now, optimizer) == _rate_by_parameter(before, old_optimizer), step
        assert _step(now, optimizer, scheduler, step) == _step(before, old_optimizer, old_scheduler, step)
    rates = _rate_by_parameter(now, optimizer)
    assert rates["model.multi_modal_projector.0.weight"] == pytest.approx(rates["model.language_model.0.weight"] / 10)
    for (name, a), (_, b) in zip(now.named_parameters(), before.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_resume_from_the_saved_optimizer_continues_bit_for_bit(tmp_path):
    args = _args(tmp_path)
    model = TinyComposite()
    optimizer = build_projector_optimizer(model, args, ["multi_modal_projector"], PROJECTOR_LR)
    scheduler = _scheduler(optimizer)
    for step in range(4):
        _step(model, optimizer, scheduler, step)
    saved_optimizer, saved_scheduler = copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())

    resumed = copy.deepcopy(model)  # a new process: new tensors, a freshly built optimizer in the same layout
    resumed_optimizer = build_projector_optimizer(resumed, args, ["multi_modal_projector"], PROJECTOR_LR)
    resumed_scheduler = _scheduler(resumed_optimizer)
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed_scheduler.load_state_dict(saved_scheduler)
    assert [g["lr"] for g in resumed_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    for step in range(4, STEPS):
        assert _step(model, optimizer, scheduler, step) == _step(resumed, resumed_optimizer, resumed_scheduler, step)
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_projector_lr_refuses_runs_it_cannot_apply_to(tmp_path):
    args = _args(tmp_path)
    model = TinyComposite()
    model.model["multi_modal_projector"].requires_grad_(False)
    with pytest.raises(LlavaLfError, match="no parameter of multi_modal_projector is trained.*additional_target"):
        build_projector_optimizer(model, args, ["multi_modal_projector"], PROJECTOR_LR)
    stage1 = TinyComposite()
    stage1.model["language_model"].requires_grad_(False)
    with pytest.raises(LlavaLfError, match="only trained module .*set learning_rate instead"):
        build_projector_optimizer(stage1, args, ["multi_modal_projector"], PROJECTOR_LR)
    with pytest.raises(LlavaLfError, match="no optimizer group has that rate"):
        check_projector_rates([{"lr": LR, "initial_lr": LR}], PROJECTOR_LR)


@functools.cache
def _tiny_lora_llava():
    """A real Llava built from a tiny config, LoRA-wrapped with the projector fully trained (as the recipe does)."""
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=28, patch_size=14),
        text_config=LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=128), image_token_index=100)
    model = LlavaForConditionalGeneration(config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                      modules_to_save=["multi_modal_projector"])
    return get_peft_model(model, lora)


@pytest.fixture(autouse=True)
def host_optimizer():
    """The host's own `create_custom_optimizer` before and after each test: what a trainer wraps does not outlive it,
    so each test sees whether its own trainer wrapped it."""
    from llava_lf.seams import optimizer as optimizer_seam

    optimizer_seam.uninstall()
    yield optimizer_seam
    optimizer_seam.uninstall()


def _host_trainer(tmp_path, **extra):
    from llamafactory.hparams import FinetuningArguments
    from llamafactory.hparams import TrainingArguments as HostTrainingArguments
    from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer

    from llava_lf.host.registration import register_all

    register_all()
    args = HostTrainingArguments(output_dir=str(tmp_path), learning_rate=LR, report_to=["llava_lf"],
                                    optim_args=f"mm_projector_lr={PROJECTOR_LR}", use_cpu=True, **extra)
    return CustomSeq2SeqTrainer(model=_tiny_lora_llava(), args=args, finetuning_args=FinetuningArguments(),
                                processor=None, tokenizer=None)


def _rates_by_kind(optimizer) -> dict[float, set[str]]:
    names = {id(p): n for n, p in _tiny_lora_llava().named_parameters()}
    found: dict[float, set[str]] = {}
    for group in optimizer.param_groups:
        kinds = {"projector" if "multi_modal_projector" in names[id(p)] else "lora" for p in group["params"]}
        found.setdefault(group.get("initial_lr", group["lr"]), set()).update(kinds)
    return found


def test_the_host_trainer_creates_our_optimizer_through_its_seam(tmp_path, host_optimizer):
    from llamafactory.train.sft import trainer as sft_trainer

    assert not host_optimizer.installed(sft_trainer)
    trainer = _host_trainer(tmp_path)  # on_init_end of our callback wraps the seam
    assert host_optimizer.installed(sft_trainer)
    optimizer = trainer.create_optimizer()
    assert _rates_by_kind(optimizer) == {LR: {"lora"}, PROJECTOR_LR: {"projector"}}
    scheduler = trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    assert sorted(set(scheduler.base_lrs)) == [PROJECTOR_LR, LR]


@pytest.mark.parametrize("config", ["ds_z2_config.json", "ds_z3_config.json"])
def test_the_optimizer_handed_to_deepspeed_has_the_projector_groups(tmp_path, config):
    """DeepSpeed is not installed here (transformers' hand-over itself imports it). With no `optimizer` section
    in the config, transformers' `deepspeed_optim_sched` hands DeepSpeed `trainer.create_optimizer()` as its
    client optimizer and builds the host's LambdaLR over it: that optimizer is checked here, the GPU run
    (benchmarks/gpu_run.sh) checks the rest."""
    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from conftest import REPO

    ds_config = HfDeepSpeedConfig(str(REPO / "yaml" / "deepspeed" / config))
    assert "optimizer" not in ds_config.config and "scheduler" not in ds_config.config
    assert ds_config.get_value("zero_allow_untested_optimizer") is True
    trainer = _host_trainer(tmp_path)
    optimizer = trainer.create_optimizer()
    assert _rates_by_kind(optimizer) == {LR: {"lora"}, PROJECTOR_LR: {"projector"}}
