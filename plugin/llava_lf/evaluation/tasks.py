"""The benchmarks `llava-lf eval` knows: each module under `benchmarks/` exports its `TASK` (or `TASKS`)."""

from __future__ import annotations

import importlib

from .task import Task

# In the order of LLaVA-1.5's table, then the demo's own questions.
BENCHMARK_MODULES: tuple[str, ...] = (
    "vqav2",
    "vizwiz",
    "textvqa",
    "gqa",
    "llava_bench",
    "mm_vet",
    "pope",
    "mme",
    "mmbench",
    "scienceqa_task",
    "seed",
    "shapes",
)


def _load() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for name in BENCHMARK_MODULES:
        module = importlib.import_module(f"{__package__}.benchmarks.{name}")
        for task in getattr(module, "TASKS", None) or (module.TASK,):
            tasks[task.name] = task
    return tasks


TASKS: dict[str, Task] = _load()
