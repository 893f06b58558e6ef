"""A benchmark's two phases, shared by `llava-lf eval BENCHMARK {predict,score}` and `llava-lf eval table`:
`predict` answers every question into a resumable predictions JSONL; `score` reads that file alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .report import WrittenReport, write_report
from .tasks import Task

if TYPE_CHECKING:
    from .predict import Predictor
    from .prediction_file import PredictRunSummary


def add_predict_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a llava-hf checkpoint (exported, or the base)")
    parser.add_argument("--adapter", type=Path, default=None, help="a LoRA adapter to merge onto --model")
    parser.add_argument("--template", default="llava_v1")
    parser.add_argument("--out", type=Path, required=True, help="predictions JSONL (resumed when it exists)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=None, help=f"default {task.max_new_tokens} (LLaVA's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions (a smoke run)")


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True, help="where the JSON, Markdown and PNG go")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score the answered questions when some are unanswered (they are listed)")


def add_phase_arguments(parser: argparse.ArgumentParser, task: Task, phase: str) -> None:
    if phase == "predict":
        add_predict_arguments(parser, task)
    else:
        add_score_arguments(parser)
    if task.questions is not None:
        task.questions.add_arguments(parser, phase)
    task.add_arguments(parser, phase)


def predict(task: Task, args: argparse.Namespace,
            loaded: dict[tuple, Predictor] | None = None) -> PredictRunSummary:
    """Answer what the predictions file lacks: in this process, or this rank's share when torchrun or accelerate
    started several (`parts.py`). `loaded` keeps models across benchmarks (the table loads each model once); a
    model is loaded only when something is left to answer."""
    from .parts import predict_into
    from .predict import GenerationSettings, Predictor, model_id, resolve_dtype
    from .ranks import rank_device, ranks_from_env

    ranks = ranks_from_env()
    requests = task.prediction_requests(args)
    if args.limit is not None:
        requests = requests[: args.limit]
    device = rank_device(args.device, ranks)
    # The device and batch size are left out: they change speed. (Which questions share a batch can move a near-tie
    # in the logits' last bits; the batches are fixed slices of the question list, whatever the processes.)
    settings = GenerationSettings(args.template, args.max_new_tokens or task.max_new_tokens,
                                  resolve_dtype(args.dtype, device))
    cache = {} if loaded is None else loaded

    def load() -> Predictor:
        key = (str(args.model), str(args.adapter), settings.template, device, settings.dtype)
        if key not in cache:
            cache[key] = Predictor(args.model, template=settings.template, max_new_tokens=settings.max_new_tokens,
                                   device=device, adapter_dir=args.adapter, dtype=settings.dtype)
        cache[key].max_new_tokens = settings.max_new_tokens
        return cache[key]

    return predict_into(requests, args.out, model_id(args.model, args.adapter), load, settings, ranks,
                        batch_size=args.batch_size, desc=f"{task.name} predict", key_of=task.key_of)


def describe_predict(task: Task, summary: PredictRunSummary) -> str:
    torn = "; dropped a torn last line left by a killed run" if summary.torn_line_dropped else ""
    if summary.rank > 0:
        return (f"{task.name}: rank {summary.rank} of {summary.world_size} answered {summary.answered_now} of the "
                f"{summary.questions - summary.already_answered} left -> {summary.part}; rank 0 merges them into "
                f"{summary.path}{torn}")
    processes = f" by {summary.world_size} processes" if summary.world_size > 1 else ""
    return (f"{task.name}: {summary.questions} questions, {summary.already_answered} already answered, "
            f"{summary.answered_now} answered now{processes} -> {summary.path}{torn}")


def score(task: Task, args: argparse.Namespace) -> tuple[dict, WrittenReport, str]:
    """(the report's JSON payload, the files written, the one-paragraph summary)."""
    report = task.report(args)
    return report.payload, write_report(report, args.out_dir), report.summary


def describe_score(written: WrittenReport) -> str:
    lines = [f"results: {written.json}", f"table:   {written.markdown}", f"chart:   {written.chart}"]
    return "\n".join(lines + [f"file:    {path}" for path in written.files])
