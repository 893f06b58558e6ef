"""What a benchmark gives `llava-lf eval` (its `Task`: arguments, prediction requests, report, and where its figure
goes in the LLaVA-1.5 paper's table), and the benchmarks there are: one module per benchmark exports its `TASK`
(or `TASKS`); a benchmark that needs several modules is a sub-package."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import KeyOf, by_id, by_id_and_prompt
from llava_lf.evaluation.questions import loader_requests, read_question_file
from llava_lf.evaluation.report import Report


@dataclass(frozen=True)
class TableColumn:
    column: str  # the paper table's column: VQAv2, GQA, ..., MM-Vet
    headline: Callable[[dict], float | None]  # our figure, read from the report's JSON; None: scored by a server
    upload: str | None = None  # the file in OUT_DIR a user sends to the benchmark's server
    digits: int = 1


@dataclass(frozen=True)
class QuestionFiles:
    """`--questions` and `--image-folder`, declared here for every benchmark that asks from a question file."""
    questions: str  # what the file is (its --help)
    images: str  # what the folder is; `predict` alone takes it
    required: bool = True  # False: another option stands in for the file (POPE's --annotations, ScienceQA's --data)
    images_required: bool = True
    scored: Literal["yes", "optional", "no"] = "yes"  # does `score` read the file: as predict does, optionally, or not
    score_help: str = ""  # its --help in `score`, where it means something else there

    def add_arguments(self, parser: argparse.ArgumentParser, phase: str) -> None:
        if phase == "predict":
            parser.add_argument("--questions", type=Path, required=self.required, help=self.questions)
            parser.add_argument("--image-folder", type=Path, required=self.images_required, help=self.images)
        elif self.scored != "no":
            parser.add_argument("--questions", type=Path, required=self.required and self.scored == "yes",
                                help=self.score_help or self.questions)


def _no_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    pass


@dataclass(frozen=True)
class Task:
    name: str
    help: str
    max_new_tokens: int  # LLaVA's answer budget for this benchmark
    report: Callable[[argparse.Namespace], Report]
    questions: QuestionFiles | None = None
    add_arguments: Callable[[argparse.ArgumentParser, str], None] = _no_arguments  # its own, per phase
    # None: LLaVA's loader runner, which asks each line of --questions as it is
    requests: Callable[[argparse.Namespace], list[PredictionRequest]] | None = None
    key_of: KeyOf = by_id  # how an answer finds its question (id, or id and prompt where ids repeat)
    column: TableColumn | None = None

    def prediction_requests(self, args: argparse.Namespace) -> list[PredictionRequest]:
        if self.requests is not None:
            return self.requests(args)
        return loader_requests(read_question_file(args.questions), args.image_folder,
                               repeated_ids=self.key_of is by_id_and_prompt)


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
