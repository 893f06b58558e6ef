"""What the distributed training tests (DeepSpeed, FSDP) share: Adam's first-step sizes, the CPU DeepSpeed fix."""

from __future__ import annotations

from pathlib import Path

# A folder holding only `sitecustomize.py` (the DeepSpeed#8539 backport), for the PYTHONPATH of DeepSpeed runs.
DEEPSPEED_CPU_FIX = Path(__file__).resolve().parent / "deepspeed_cpu"


def first_step_sizes(base: dict, trained: dict) -> tuple[list[float], list[float]]:
    """Largest change of each projector tensor, and largest value of each LoRA B (zero at the start), after one
    step: Adam moves every weight by about its group's learning rate then, so each list shows one rate."""
    projector, lora_b = [], []
    for key, value in trained.items():
        if ".multi_modal_projector." in key:
            source = "multi_modal_projector." + key.split(".multi_modal_projector.")[1]
            projector.append((value - base[source]).abs().max().item())
        elif ".lora_B." in key:
            lora_b.append(value.abs().max().item())
    return projector, lora_b
