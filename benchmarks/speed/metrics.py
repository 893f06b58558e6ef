"""Tokens/s, MFU (4N convention) and the loss-curve comparison, from step records. Pure arithmetic.

MFU convention (PERFORMANCE.md, "4N"): model FLOPs per step =
    4 x N_llm x tokens                      frozen base: forward 2N + input-gradient backward 2N
  + 4 x L x d x sum(s^2) over sequences     causal attention (QK^T and AV), forward + backward
  + 2 x N_vision x image tokens             the frozen vision tower's forward
divided by the step time and the device's dense bf16 peak (989 TFLOP/s on H100 and H200 SXM).
N_llm counts the language model with its embeddings and lm_head, without LoRA; recomputation
(gradient checkpointing) and LoRA's own matmuls are work done but not counted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .model import ModelFacts
from .probe import StepRecord

MFU_CONVENTION = ("4N: (4*N_llm*tokens + 4*L*d*sum(seq_len^2) + 2*N_vision*image_tokens) / step_time / peak; "
                  "frozen base forward 2N + input-gradient backward 2N; recomputation and LoRA matmuls not counted")
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0,
               "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_TFLOPS[key]
    return None


def step_flops(facts: ModelFacts, step: StepRecord) -> float:
    llm = 4.0 * facts.llm_params * step.tokens
    attention = 4.0 * facts.text_layers * facts.text_hidden * step.sum_sq_seq_len
    vision = 2.0 * facts.vision_params * facts.image_tokens * step.images  # every image the tower encoded
    return llm + attention + vision


@dataclass(frozen=True)
class Throughput:
    measured_steps: int
    seconds: float
    tokens: int
    tokens_per_s: float
    step_s_median: float
    tokens_per_step: float
    samples_per_step: float
    padding_fraction: float  # padded positions the model computed on / all positions
    mfu: float | None


def throughput(steps: list[StepRecord], warmup: int, facts: ModelFacts, peak: float | None) -> Throughput:
    """Over the steps after `warmup` (compilation, allocator growth, the first data loads)."""
    measured = steps[warmup:]
    if not measured:
        raise ValueError(f"no step after {warmup} warm-up steps to measure; raise --steps or lower --warmup-steps")
    seconds = sum(step.seconds for step in measured)
    tokens = sum(step.tokens for step in measured)
    padded = sum(step.padded_tokens for step in measured)
    flops = sum(step_flops(facts, step) for step in measured)
    return Throughput(
        measured_steps=len(measured), seconds=seconds, tokens=tokens, tokens_per_s=tokens / seconds,
        step_s_median=statistics.median(step.seconds for step in measured), tokens_per_step=tokens / len(measured),
        samples_per_step=sum(step.sequences for step in measured) / len(measured),
        padding_fraction=1.0 - tokens / padded if padded else 0.0,
        mfu=flops / seconds / (peak * 1e12) if peak else None)


@dataclass(frozen=True)
class LossComparison:
    steps: int
    rtol: float
    max_rel_diff: float
    mean_rel_diff: float
    worst_step: int
    within_tolerance: bool
    comparable: bool  # the same samples per optimizer step (else the curves measure different things)
    note: str


def compare_losses(reference: dict[int, float], candidate: dict[int, float], rtol: float, first: int = 20,
                   samples: tuple[float, float] | None = None) -> LossComparison:
    """Equal curves: over the first `first` steps, each step's loss within `rtol` of the reference's at the
    same step, and the mean relative difference within `rtol / 2` (a small systematic drift fails too)."""
    shared = sorted(set(reference) & set(candidate))[:first]
    if not shared:
        return LossComparison(0, rtol, float("nan"), float("nan"), 0, False, False, "no logged step in common")
    diffs = {step: abs(candidate[step] - reference[step]) / abs(reference[step]) for step in shared}
    worst = max(diffs, key=diffs.get)
    mean = statistics.fmean(diffs.values())
    comparable = samples is None or abs(samples[0] - samples[1]) <= 0.05 * max(samples)
    note = "" if comparable else (f"samples per step differ ({samples[0]:.1f} vs {samples[1]:.1f}): "
                                  "the curves follow different data")
    return LossComparison(steps=len(shared), rtol=rtol, max_rel_diff=diffs[worst], mean_rel_diff=mean,
                          worst_step=worst, within_tolerance=comparable and diffs[worst] <= rtol and mean <= rtol / 2,
                          comparable=comparable, note=note)
