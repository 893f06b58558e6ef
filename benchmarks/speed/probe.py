"""Measure a host training from the inside: step times, real tokens, sequences, losses, peak memory.

A step's time is the interval between two consecutive optimizer-step ends, each after a device
synchronisation, so it includes everything the trainer does between them: fetching the batches
(which the host does before `on_step_begin`), forward, backward, optimizer, logging.
Tokens are counted from what the model is actually called with (a forward pre-hook), so padding is
never counted and packed batches count each packed sequence, whatever form their attention mask takes.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

COUNTS = ("tokens", "image_tokens", "sequences", "sum_sq_seq_len")  # gathered on the device, per model call


def segment_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None,
                pad_id: int | None) -> torch.Tensor:
    """Per position, the number of the sequence it belongs to within its row (1, 2, ...), 0 for padding.

    Padded rows, packed rows with the host's numbered masks, 4-D block masks and restarting position ids
    alike; fixed-shape tensor operations only, so the device is never waited for."""
    if attention_mask is not None and attention_mask.dim() == 4:  # [b, 1, s, s], additive or boolean
        allowed = attention_mask[:, 0] if attention_mask.dtype == torch.bool else attention_mask[:, 0] == 0
        real = torch.diagonal(allowed, dim1=-2, dim2=-1)
        starts = torch.ones_like(real)
        starts[:, 1:] = ~torch.diagonal(allowed, offset=-1, dim1=-2, dim2=-1)  # position i cannot see i-1
        return torch.cumsum(starts & real, -1) * real
    if attention_mask is not None and attention_mask.dim() == 2:
        real = attention_mask != 0
    elif pad_id is not None:
        real = input_ids != pad_id
    else:
        real = torch.ones_like(input_ids, dtype=torch.bool)
    if position_ids is not None and position_ids.shape == input_ids.shape:
        return torch.cumsum((position_ids == 0) & real, -1) * real
    if attention_mask is not None and attention_mask.dim() == 2:
        return attention_mask.long() * real  # the host numbers packed sequences 1, 1, 2, 2, 2, 0; plain masks are 1
    return real.long()


def segment_lengths(ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq] counts: entry (b, k) is the length of sequence k + 1 of row b (0 where there is none)."""
    counts = torch.zeros(ids.shape[0], ids.shape[1] + 1, dtype=torch.long, device=ids.device)
    counts.scatter_add_(1, ids.long(), torch.ones_like(ids, dtype=torch.long))
    return counts[:, 1:]


def sequence_lengths(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None,
                     pad_id: int | None) -> torch.Tensor:
    """Length of every sequence in a batch, row by row. Attention cost grows with these, not with rows."""
    counts = segment_lengths(segment_ids(input_ids, attention_mask, position_ids, pad_id))
    return counts[counts > 0]


def batch_counts(inputs: dict[str, Any], pad_id: int | None, image_id: int | None) -> torch.Tensor:
    """The COUNTS of one model call, as one float64 tensor on the inputs' device (no synchronisation)."""
    input_ids = inputs["input_ids"]
    ids = segment_ids(input_ids, inputs.get("attention_mask"), inputs.get("position_ids"), pad_id)
    lengths = segment_lengths(ids).double()
    image_tokens = (input_ids == image_id).sum() if image_id is not None else input_ids.new_zeros(())
    return torch.stack([lengths.sum(), image_tokens.double(), (lengths > 0).sum().double(), (lengths**2).sum()])


@dataclass
class StepRecord:
    step: int
    seconds: float  # since the previous step ended (the first: since training began)
    tokens: int
    padded_tokens: int
    image_tokens: int
    sequences: int
    sum_sq_seq_len: float
    images: int


@dataclass
class RunRecord:
    steps: list[StepRecord] = field(default_factory=list)
    losses: dict[int, float] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    peak_gpu_allocated_gib: float | None = None
    peak_gpu_reserved_gib: float | None = None
    peak_host_rss_gib: float | None = None
    device: str = "cpu"

    def write(self, path: Path) -> None:
        payload = asdict(self)
        payload["losses"] = {str(step): loss for step, loss in self.losses.items()}
        Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        payload["steps"] = [StepRecord(**step) for step in payload["steps"]]
        payload["losses"] = {int(step): loss for step, loss in payload["losses"].items()}
        return cls(**payload)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _zero_stage(args) -> int | None:
    """The ZeRO stage DeepSpeed was configured with (None without DeepSpeed), as the trainer holds it."""
    config = getattr(getattr(args, "hf_deepspeed_config", None), "config", None)
    return config.get("zero_optimization", {}).get("stage") if config else None


def _setup(args, model, processing_class) -> dict[str, Any]:
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_steps": args.max_steps, "bf16": args.bf16, "seed": args.seed, "learning_rate": args.learning_rate,
        "dataloader_num_workers": args.dataloader_num_workers, "torch_compile": args.torch_compile,
        "gradient_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
        "attn_implementation": getattr(text, "_attn_implementation", None),
        "deepspeed_zero_stage": _zero_stage(args),
        "trainable_params": trainable, "model_class": type(model).__name__,
        "processing_class": type(processing_class).__name__,
    }


class StepProbe(TrainerCallback):
    """Collects a RunRecord; it never changes what the trainer does."""

    def __init__(self, echo_every: int = 1) -> None:
        self.record = RunRecord()
        self.echo_every = echo_every
        self._pending: list[tuple[torch.Tensor, int, int]] = []  # device counts, positions, images
        self._hook = None
        self._last = 0.0
        self._ids: tuple[int | None, int | None] = (None, None)

    def _count(self, module, args, kwargs) -> None:
        if module.training and "input_ids" in kwargs:
            pixels = kwargs.get("pixel_values")
            images = int(pixels.shape[0]) if isinstance(pixels, torch.Tensor) else 0
            positions = int(kwargs["input_ids"].numel())
            self._pending.append((batch_counts(kwargs, *self._ids), positions, images))

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        config = getattr(model, "config", None)
        self._ids = (getattr(tokenizer, "pad_token_id", None), getattr(config, "image_token_id", None))
        self.record.setup = _setup(args, model, processing_class)
        self.record.device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        _sync()
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        now = time.perf_counter()
        totals = dict.fromkeys(COUNTS, 0.0)
        padded_tokens = images = 0
        for counts, positions, batch_images in self._pending:
            for key, value in zip(COUNTS, counts.tolist()):
                totals[key] += value
            padded_tokens += positions
            images += batch_images
        self._pending.clear()
        step = StepRecord(step=state.global_step, seconds=now - self._last, tokens=int(totals["tokens"]),
                          padded_tokens=padded_tokens, image_tokens=int(totals["image_tokens"]),
                          sequences=int(totals["sequences"]), sum_sq_seq_len=totals["sum_sq_seq_len"], images=images)
        self.record.steps.append(step)
        if state.global_step % self.echo_every == 0:
            print(f"[speed-probe] step {state.global_step}/{state.max_steps} {step.seconds:.3f}s "
                  f"{step.tokens} tokens", flush=True)
        self._last = time.perf_counter()  # the bookkeeping above is not the trainer's time

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.record.losses[state.global_step] = float(logs["loss"])

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
        if torch.cuda.is_available():
            self.record.peak_gpu_allocated_gib = torch.cuda.max_memory_allocated() / 2**30
            self.record.peak_gpu_reserved_gib = torch.cuda.max_memory_reserved() / 2**30
        self.record.peak_host_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
