"""The training callback that `report_to: [llava_lf]` adds to the host's Trainer: it reads our options from
`optim_args`, refuses what cannot work, moves a resume off a half-written checkpoint, installs the projector's
optimizer, checks the data order, applies the speed options and writes `llava_lf_training.json` (docs/recipe.md).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from transformers import TrainerCallback

from llava_lf.errors import LlavaLfError
from llava_lf.seams.optimizer import install as install_optimizer_seam
from llava_lf.seams.trainer import require_for

from .data_order import image_flags, sampling
from .image_newline import FILE as NEWLINE_FILE
from .image_newline import restore as restore_newline
from .image_newline import save as save_newline
from .image_newline import train_under_lora as train_newline_under_lora
from .modality import check_grouping
from .model_parts import ModuleKeys
from .options import TrainingOptions, TrainingOptionsError, parse_training_options
from .precision import check_precision
from .projector_lr import check_module_rates, module_param_groups, module_rates, optimizer_for_run
from .report import (
    TrainingReport,
    attention_backends,
    describe_param_groups,
    model_params_by_group,
    trainable_by_module,
)
from .resume import choose_resume_point
from .speed import apply_speed_options


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


def _check_resume_point(args: Any) -> None:
    choice = choose_resume_point(args.output_dir, args.resume_from_checkpoint)
    if choice.refused:
        raise TrainingOptionsError([(
            f"resume_from_checkpoint={args.resume_from_checkpoint} is incomplete (no readable trainer_state.json: "
            f"the run was stopped while writing it); choose an earlier checkpoint-N")])
    if choice.changed:
        args.resume_from_checkpoint = choice.checkpoint
        print(f"llava_lf: skipped incomplete checkpoint(s) {', '.join(choice.skipped)} (a run stopped while writing "
              f"them); resuming from {choice.checkpoint or 'the start'}", file=sys.stderr, flush=True)


class LlavaTrainingCallback(TrainerCallback):
    """Projector learning rate, modality-order check and a training report for LLaMA-Factory runs."""

    def __init__(self) -> None:
        self.options = TrainingOptions()
        self._newline_under_lora = False  # image_newline made trainable here: saved beside the adapter
        self._speed = contextlib.ExitStack()  # the SDPA kernel choice lasts until training ends

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.options = parse_training_options(args.optim_args, args.optim)
        check_precision(model, args)
        try:
            require_for(self.options)  # the seams group_by_modality and sdpa_backend rely on (llava_lf.seams)
        except LlavaLfError as error:
            raise TrainingOptionsError([str(error)]) from None
        _check_resume_point(args)
        if model is not None:  # before the optimizer exists: it takes the newline into the base-rate groups
            self._newline_under_lora = train_newline_under_lora(model)
        rates = module_rates(self.options, ModuleKeys.of(model))
        if rates:
            try:
                if model is not None:  # fail before the data is read, with the same checks the optimizer makes
                    module_param_groups(model.named_parameters(), (), rates, 0.0)
                install_optimizer_seam(optimizer_for_run)
            except LlavaLfError as error:  # the host shows it in a traceback: under our options' heading
                raise TrainingOptionsError([str(error)]) from None
        return control

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        config = getattr(model, "config", None)
        keys = ModuleKeys.of(model)
        notes = []
        rates = module_rates(self.options, keys)
        try:
            check_module_rates(optimizer.param_groups, rates)
        except LlavaLfError as error:
            raise TrainingOptionsError([str(error)]) from None
        notes += [f"{'/'.join(rate.keys)} in its own group(s) at {rate.option}={rate.lr:g} from optimizer creation"
                  for rate in rates]
        if self._newline_under_lora:
            notes.append(f"image_newline trained with the language model and saved beside the adapter "
                         f"({NEWLINE_FILE})")
            if isinstance(args.resume_from_checkpoint, str):  # the Trainer loads the adapter only
                restore_newline(model, args.resume_from_checkpoint)
        try:
            applied = apply_speed_options(self.options, model, args.device.type, self._speed)
        except LlavaLfError as error:
            raise TrainingOptionsError([str(error)]) from None
        if applied != type(applied)(decoder_layers=applied.decoder_layers):
            notes.append(f"speed options: {applied}")
        modality = _check_modality_order(args, train_dataloader) if self.options.group_by_modality else None
        named = list(model.named_parameters())
        report = TrainingReport(
            options=self.options.as_dict(),
            global_step_at_start=state.global_step,
            trainable_parameters=trainable_by_module(named, keys),
            param_groups=describe_param_groups(optimizer.param_groups, named, keys,
                                              model_params_by_group(optimizer)),
            attention=attention_backends(config) if config is not None else {},
            modality=modality, notes=notes)
        if state.is_world_process_zero:
            path = report.write(args.output_dir)
            print(f"llava_lf: {report.summary()}; report: {path}", file=sys.stderr, flush=True)
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        if self._newline_under_lora:  # the checkpoint the Trainer just wrote: PEFT saved the adapter only
            checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"
            save_newline(model, checkpoint, state.is_world_process_zero)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._speed.close()
        if self._newline_under_lora:  # the host saves the adapter into output_dir right after this
            save_newline(model, args.output_dir, state.is_world_process_zero)
        return control
