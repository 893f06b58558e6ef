"""What packing saves on LLaVA's mixed-length data: padding share and real tokens per step at equal memory.

No model runs: sample lengths are drawn from a mix665k-like distribution and batched as training would.
  random    shuffled micro-batches, each padded to its longest sample (the host without packing)
  grouped   modality-grouped micro-batches (`llava-lf group-modality`), padded the same way
  packed    the host's `packing: true` (its own `greedy_knapsack`) into sequences of `cutoff_len`
"Equal memory" = the same token slots per micro-batch at the peak: an unpadded micro-batch of B samples
that meets a long text sample holds B x cutoff slots, so the packed run gets B packs of `cutoff_len`.

Distribution (stated, not measured from the file; mix665k has ~40K ShareGPT rows in 665K):
  94% image samples: 576 image tokens + text ~ lognormal(median 80, sigma 0.8), text clipped to [8, 1472]
   6% ShareGPT text:  lognormal(median 1400, sigma 0.5) tokens, clipped to [64, cutoff_len]

    python benchmarks/packing_padding.py [--samples 200000] [--batch 16] [--cutoff 2048] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

IMAGE_TOKENS, TEXT_SHARE = 576, 0.06


@dataclass(frozen=True)
class Layout:
    name: str
    padding_share: float  # padded slots / all slots
    real_tokens_per_step_mean: float
    peak_slots_per_step: int


def mixed_lengths(samples: int, cutoff: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, is_text) drawn from the stated mix665k-like distribution."""
    rng = np.random.default_rng(seed)
    is_text = rng.random(samples) < TEXT_SHARE
    image = IMAGE_TOKENS + np.clip(rng.lognormal(np.log(80), 0.8, samples), 8, cutoff - IMAGE_TOKENS)
    text = np.clip(rng.lognormal(np.log(1400), 0.5, samples), 64, cutoff)
    return np.where(is_text, text, image).astype(int), is_text


def padded(name: str, lengths: np.ndarray, batch: int) -> Layout:
    usable = len(lengths) // batch * batch
    rows = lengths[:usable].reshape(-1, batch)
    slots = rows.max(axis=1) * batch
    return Layout(name, 1 - rows.sum() / slots.sum(), float(rows.sum(axis=1).mean()), int(slots.max()))


def grouped_order(lengths: np.ndarray, is_text: np.ndarray, batch: int, seed: int) -> np.ndarray:
    """The order `llava-lf group-modality` writes: each modality in chunks of `batch`, chunks shuffled."""
    rng = np.random.default_rng(seed)
    chunks = []
    for flag in (False, True):
        kind = lengths[is_text == flag]
        chunks += [kind[i:i + batch] for i in range(0, len(kind) // batch * batch, batch)]
    order = rng.permutation(len(chunks))
    return np.concatenate([chunks[i] for i in order])


def packed(lengths: np.ndarray, batch: int, cutoff: int) -> Layout:
    from llamafactory.data.processor.processor_utils import greedy_knapsack

    packs = greedy_knapsack(lengths.tolist(), cutoff)
    filled = np.array([sum(pack) for pack in packs])
    per_step = filled[: len(filled) // batch * batch].reshape(-1, batch).sum(axis=1)
    return Layout("packed", 1 - filled.sum() / (len(filled) * cutoff), float(per_step.mean()), batch * cutoff)


def measure(samples: int, batch: int, cutoff: int, seed: int) -> dict:
    lengths, is_text = mixed_lengths(samples, cutoff, seed)
    layouts = [padded("random", lengths, batch),
               padded("grouped", grouped_order(lengths, is_text, batch, seed), batch),
               packed(lengths, batch, cutoff)]
    return {"samples": samples, "micro_batch": batch, "cutoff_len": cutoff, "seed": seed,
            "mean_length": float(lengths.mean()), "text_share": float(is_text.mean()),
            "layouts": [asdict(layout) for layout in layouts]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cutoff", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = measure(args.samples, args.batch, args.cutoff, args.seed)
    print(f"{result['samples']} samples, mean {result['mean_length']:.0f} tokens, text-only {result['text_share']:.1%}, "
          f"micro batch {args.batch}, cutoff {args.cutoff}")
    for layout in result["layouts"]:
        print(f"  {layout['name']:8s} padding {layout['padding_share']:6.1%}  real tokens/step "
              f"{layout['real_tokens_per_step_mean']:8.0f}  peak slots/step {layout['peak_slots_per_step']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
