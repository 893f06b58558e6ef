"""What a benchmark gives `llava-lf eval` (its `Task`: arguments, prediction requests, report, and where its figure
goes in the LLaVA-1.5 paper's table), and the benchmarks there are: one module per benchmark exports its `TASK`
(or `TASKS`); a benchmark that needs several modules is a sub-package."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import KeyOf, by_id
from llava_lf.evaluation.report import Report


@dataclass(frozen=True)
class TableColumn:
    column: str  # the paper table's column: VQAv2, GQA, ..., MM-Vet
    headline: Callable[[dict], float | None]  # our figure, read from the report's JSON; None: scored by a server
    upload: str | None = None  # the file in OUT_DIR a user sends to the benchmark's server
    digits: int = 1


@dataclass(frozen=True)
class Task:
    name: str
    help: str
    max_new_tokens: int  # LLaVA's answer budget for this benchmark
    add_arguments: Callable[[argparse.ArgumentParser, str], None]  # (parser, phase: "predict" or "score")
    requests: Callable[[argparse.Namespace], list[PredictionRequest]]
    report: Callable[[argparse.Namespace], Report]
    key_of: KeyOf = by_id  # how an answer finds its question (id, or id and prompt where ids repeat)
    column: TableColumn | None = None


# In the order of LLaVA-1.5's table, then the demo's own questions; each under this package.
MODULES: tuple[str, ...] = (
    "vqa.vqav2",
    "vqa.vizwiz",
    "vqa.textvqa",
    "gqa",
    "llava_bench",
    "mm_vet.mm_vet",
    "pope",
    "mme.mme",
    "mmbench.mmbench",
    "scienceqa",
    "seed",
    "demo",
)


def _load() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for task in getattr(module, "TASKS", None) or (module.TASK,):
            tasks[task.name] = task
    return tasks


# Last: each benchmark module imports `Task` from this package while it loads.
TASKS: dict[str, Task] = _load()
