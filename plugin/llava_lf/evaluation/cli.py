"""`llava-lf eval BENCHMARK {predict,score}` for every benchmark in the registry (`tasks.py`), and
`llava-lf eval table`, which runs them all into LLaVA-1.5's table."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import phases
from .tasks import TASKS, Task


def _run_predict(task: Task, args: argparse.Namespace) -> int:
    print(phases.describe_predict(task, phases.predict(task, args)))
    return 0


def _run_score(task: Task, args: argparse.Namespace) -> int:
    _, written, summary = phases.score(task, args)
    print(summary)
    print(phases.describe_score(written))
    return 0


def _step(step):
    """The phase's function for `llava-lf`'s dispatcher, which maps errors to exit codes."""
    return lambda args: step(TASKS[args.benchmark], args)


def _run_table(args: argparse.Namespace) -> int:
    from .table import run_table
    from .table_config import load_table_config

    result = run_table(load_table_config(args.config, args.out_dir))
    print(result.summary)
    return 0


def add_subcommand(commands) -> None:
    evaluate = commands.add_parser("eval", help="benchmarks: `predict` (resumable), then `score`; or the whole table")
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True)
    for task in TASKS.values():
        bench = benchmarks.add_parser(task.name, help=task.help)
        phase_parsers = bench.add_subparsers(dest="phase", required=True)
        predict = phase_parsers.add_parser("predict", help="answer every question into a predictions JSONL (resumable)")
        phases.add_phase_arguments(predict, task, "predict")
        predict.set_defaults(run=_step(_run_predict))
        score = phase_parsers.add_parser("score", help="score a predictions JSONL: JSON, Markdown table and PNG chart")
        phases.add_phase_arguments(score, task, "score")
        score.set_defaults(run=_step(_run_score))
    table = benchmarks.add_parser("table", help="LLaVA-1.5's twelve-benchmark table: predict and score each benchmark "
                                                "a YAML names, beside the published numbers (resumable)")
    table.add_argument("config", type=Path, help="YAML: the model, the output folder, each benchmark's files "
                                                 "(see docs/eval.md; `llava-lf recipes copy` ships an example)")
    table.add_argument("--out-dir", type=Path, default=None, help="overrides the YAML's out_dir")
    table.set_defaults(run=_run_table)
