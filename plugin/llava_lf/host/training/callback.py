"""The training callback that `report_to: [llava_lf]` adds to every host Trainer.

It is registered in transformers' reporting-integration registry, so a YAML selects it by name; a YAML that
names it in an environment without this plugin fails before training ("llava_lf is not supported").
- `on_init_end`: parses our options out of `optim_args` and rejects what cannot work (before the optimizer).
- `on_train_begin`: gives the projector its own learning rate, checks the modality-grouped data order, and
  writes `llava_lf_training.json` (trainable modules, param groups with their rates, attention backend).
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import TrainerCallback

from .data_order import image_flags, sampling
from .modality import check_grouping
from .options import TrainingOptions, TrainingOptionsError, parse_training_options
from .projector_lr import ProjectorLrError, split_projector_groups
from .report import ModuleKeys, TrainingReport, attention_backends, describe_param_groups, trainable_by_module


def _check_modality_order(args: Any, train_dataloader: Any) -> dict:
    in_order, samplers = sampling(train_dataloader)
    if not in_order:
        raise TrainingOptionsError([(
            f"group_by_modality=true but the training set is read in shuffled order (samplers: "
            f"{', '.join(samplers) or 'none'}); set `disable_shuffling: true` and train on data from "
            f"`llava-lf group-modality`")])
    flags = image_flags(getattr(train_dataloader, "dataset", None))
    if flags is None:
        raise TrainingOptionsError([("group_by_modality=true but the training set has no `images` column; it needs "
                                     "a multimodal dataset (columns.images in dataset_info.json)")])
    check = check_grouping(flags, args.per_device_train_batch_size)
    if not check.grouped:
        raise TrainingOptionsError([(
            f"group_by_modality=true but {len(check.mixed_batches)} of "
            f"{check.image_batches + check.text_batches + len(check.mixed_batches)} micro-batches of "
            f"{check.micro_batch} mix image and text-only rows (first: {check.mixed_batches[:5]}); regroup the "
            f"data with `llava-lf group-modality --batch N` for a global batch N that "
            f"per_device_train_batch_size={check.micro_batch} divides, and drop val_size (its split shuffles)")])
    return check.as_dict()


class LlavaTrainingCallback(TrainerCallback):
    """Projector learning rate, modality-order check and a training report for LLaMA-Factory runs."""

    def __init__(self) -> None:
        self.options = TrainingOptions()

    def on_init_end(self, args, state, control, **kwargs):
        self.options = parse_training_options(args.optim_args, args.optim)
        if self.options.mm_projector_lr is not None and args.deepspeed:
            raise TrainingOptionsError([(
                "mm_projector_lr cannot be applied under DeepSpeed: ZeRO fuses each optimizer group's parameters "
                "into flat buffers when it starts, before a callback can give the projector a group of its own. "
                "Train LoRA stage 2 with plain DDP (FORCE_TORCHRUN=1, no `deepspeed:`; 7B LoRA fits), or drop "
                "mm_projector_lr to train the projector at learning_rate")])
        return control

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        config = getattr(model, "config", None)
        keys = ModuleKeys.for_model_type(getattr(config, "model_type", None))
        notes = []
        if self.options.mm_projector_lr is not None:
            try:
                moved = split_projector_groups(optimizer, lr_scheduler, model.named_parameters(), keys.projector,
                                               self.options.mm_projector_lr)
            except ProjectorLrError as error:
                raise TrainingOptionsError([str(error)]) from None
            notes.append(f"projector moved to its own group(s) {[split.group for split in moved]} at "
                         f"mm_projector_lr={self.options.mm_projector_lr:g}")
        modality = _check_modality_order(args, train_dataloader) if self.options.group_by_modality else None
        named = list(model.named_parameters())
        report = TrainingReport(
            options={"mm_projector_lr": self.options.mm_projector_lr,
                     "group_by_modality": self.options.group_by_modality},
            global_step_at_start=state.global_step,
            trainable_parameters=trainable_by_module(named, keys),
            param_groups=describe_param_groups(optimizer.param_groups, named, keys),
            attention=attention_backends(config) if config is not None else {},
            modality=modality, notes=notes)
        if state.is_world_process_zero:
            path = report.write(args.output_dir)
            print(f"llava_lf: {report.summary()}; report: {path}", file=sys.stderr, flush=True)
        return control
