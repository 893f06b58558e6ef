"""Published LLaVA numbers, set beside ours in every results table (percent, MME in points; higher is better).
Judge-based scores (LLaVA-Bench, MM-Vet) depend on the judge model's version: compare them only with care."""

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


# LLaVA-1.5's benchmark table, as LLaVA's Model Zoo lists it (docs/MODEL_ZOO.md, table "LLaVA-v1.5"; the two
# judged columns as corrected on 2023-10-13). Columns in the paper's order.
TABLE_SOURCE = "LLaVA's Model Zoo (docs/MODEL_ZOO.md), table LLaVA-v1.5"
TABLE_MODELS = ("LLaVA-1.5 7B", "LLaVA-1.5 13B", "LLaVA-1.5 7B LoRA", "LLaVA-1.5 13B LoRA")
LLAVA_1_5: dict[str, tuple[float, float, float, float]] = {
    "VQAv2": (78.5, 80.0, 79.1, 80.0),
    "GQA": (62.0, 63.3, 63.0, 63.3),
    "VizWiz": (50.0, 53.6, 47.8, 58.9),
    "SQA-IMG": (66.8, 71.6, 68.4, 71.2),
    "TextVQA": (58.2, 61.3, 58.2, 60.2),
    "POPE": (85.9, 85.9, 86.4, 86.7),
    "MME": (1510.7, 1531.3, 1476.9, 1541.7),
    "MMB": (64.3, 67.7, 66.1, 68.5),
    "MMB-CN": (58.3, 63.6, 58.9, 61.5),
    "SEED": (58.6, 61.6, 60.1, 61.3),
    "LLaVA-W": (65.4, 72.5, 67.9, 69.5),
    "MM-Vet": (31.1, 36.1, 30.2, 38.3),
}
# What each column's figure is, as the table reports it.
TABLE_NOTES: dict[str, str] = {
    "VQAv2": "test-dev, VQA accuracy from the EvalAI server",
    "GQA": "testdev-balanced accuracy (GQA's eval.py)",
    "VizWiz": "test, VQA accuracy from the EvalAI server",
    "SQA-IMG": "ScienceQA test, questions with an image",
    "TextVQA": "val accuracy (M4C evaluator), OCR tokens in the prompt",
    "POPE": "mean F1 over the three COCO splits",
    "MME": "perception score (of 2000)",
    "MMB": "MMBench dev, circular accuracy from the OpenCompass server",
    "MMB-CN": "MMBench-CN dev, circular accuracy from the OpenCompass server",
    "SEED": "SEED-Bench v1 total accuracy (image and video questions)",
    "LLaVA-W": "LLaVA-Bench-in-the-Wild relative score, GPT-4 judge (7B: mean of 3 runs); 63.4 on release day",
    "MM-Vet": "GPT-4 grader total (7B: mean of 3 runs, 13B: one run); 30.5 on release day",
}


def column(name: str, key: str = "all") -> dict[str, tuple[Published, ...]]:
    """One column of LLaVA-1.5's table, filed under `key`, for a benchmark's comparison table."""
    note = TABLE_NOTES[name]
    return {key: tuple(Published(model, value, note) for model, value in zip(TABLE_MODELS, LLAVA_1_5[name]))}


# LLaVA-NeXT's (1.6) rows, set beside a NeXT model (config `model_type: llava_next`) instead: the Model Zoo's
# "LLaVA-v1.6" table (full fine-tuning). It reports SEED-IMG (image questions only), not the total our SEED column
# holds, so that cell stays empty and the note gives the figures.
TABLE_1_6_SOURCE = "LLaVA's Model Zoo (docs/MODEL_ZOO.md), table LLaVA-v1.6"
TABLE_1_6_MODELS = ("LLaVA-1.6 Vicuna-7B", "LLaVA-1.6 Vicuna-13B", "LLaVA-1.6 Mistral-7B", "LLaVA-1.6 34B")
LLAVA_1_6: dict[str, tuple[float | None, ...]] = {
    "VQAv2": (81.8, 82.8, 82.2, 83.7),
    "GQA": (64.2, 65.4, 64.8, 67.1),
    "VizWiz": (57.6, 60.5, 60.0, 63.8),
    "SQA-IMG": (70.1, 73.6, 72.8, 81.8),
    "TextVQA": (64.9, 67.1, 65.7, 69.5),
    "POPE": (86.5, 86.2, 86.7, 87.7),
    "MME": (1519, 1575, 1498, 1631),
    "MMB": (67.4, 70.0, 68.7, 79.3),
    "MMB-CN": (60.6, 64.4, 61.2, 79.0),
    "SEED": (None, None, None, None),
    "LLaVA-W": (81.6, 87.3, 83.2, 89.6),
    "MM-Vet": (43.9, 48.4, 47.3, 57.4),
}
TABLE_1_6_NOTES = {"SEED": "LLaVA-1.6 publishes SEED-IMG only (image questions): 70.2, 71.9, 72.2, 75.9",
                   "MME": "perception score (of 2000); LLaVA-1.6's cognition scores: 332, 326, 321, 397"}


@dataclass(frozen=True)
class PublishedTable:
    """The published rows a results table sets beside a model: its family's."""
    title: str
    source: str
    models: tuple[str, ...]
    labels: tuple[str, ...]  # short names for the chart
    values: dict[str, tuple[float | None, ...]]
    notes: dict[str, str]


LLAVA_1_5_TABLE = PublishedTable("LLaVA-1.5", TABLE_SOURCE, TABLE_MODELS, ("7B", "13B", "7B LoRA", "13B LoRA"),
                                 LLAVA_1_5, TABLE_NOTES)
LLAVA_1_6_TABLE = PublishedTable("LLaVA-NeXT (1.6)", TABLE_1_6_SOURCE, TABLE_1_6_MODELS,
                                 ("1.6 V-7B", "1.6 V-13B", "1.6 M-7B", "1.6 34B"), LLAVA_1_6,
                                 TABLE_NOTES | TABLE_1_6_NOTES)
