"""Published LLaVA numbers, set beside ours in every results table (percent; higher is better).

Judge-based scores (LLaVA-Bench) depend on the judge model's version: compare them only with care.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    model: str
    value: float
    note: str = ""


# Keyed by the result row each number belongs beside.
SCIENCEQA: dict[str, tuple[Published, ...]] = {
    "all": (Published("LLaVA (fine-tuned on ScienceQA)", 90.92),),
    # Our overall figure after a judge decided where it and we disagree (`score --judge-base-url ...`).
    "judged": (Published("LLaVA + GPT-4 judge", 92.53, "ensemble with a GPT-4 judge"),),
    "IMG": (
        Published("LLaVA-1.5 7B", 66.8, "zero-shot, SQA-IMG"),
        Published("LLaVA-1.5 7B LoRA", 68.4, "zero-shot, SQA-IMG"),
        Published("LLaVA-1.5 13B", 71.6, "zero-shot, SQA-IMG"),
        Published("LLaVA-1.5 13B LoRA", 71.2, "zero-shot, SQA-IMG"),
    ),
}

LLAVA_BENCH: dict[str, dict[str, tuple[Published, ...]]] = {
    "wild": {"all": (Published("LLaVA-1.5 7B", 65.4, "GPT-4 judge"), Published("LLaVA-1.5 7B LoRA", 67.9, "GPT-4 judge"))},
    "coco": {"all": (Published("LLaVA", 85.1, "GPT-4 judge"),)},
}

# LLaVA-1.5 reports one POPE figure over the three COCO splits; we set our mean F1 beside it.
POPE: dict[str, tuple[Published, ...]] = {
    "mean F1": (Published("LLaVA-1.5 7B", 85.9), Published("LLaVA-1.5 7B LoRA", 86.4)),
}
