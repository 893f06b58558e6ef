"""What a benchmark gives `llava-lf eval`: its arguments, its prediction requests, its report, and where its
figure goes in the LLaVA-1.5 paper's table."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from .predict import PredictionRequest
from .prediction_file import KeyOf, by_id
from .report import Report


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
