"""`llava-lf eval BENCHMARK {predict,score}` for every benchmark in the registry (`tasks.py`).

`predict` answers every question with the model (greedy, batched) into a predictions JSONL and resumes
where a killed run stopped; `score` reads that file alone, so scoring can be re-run without the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .task import Task
from .tasks import TASKS


def _run_predict(task: Task, args: argparse.Namespace) -> int:
    from .predict import GenerationSettings, Predictor, model_id, resolve_device, resolve_dtype
    from .prediction_file import run_predictions

    requests = task.requests(args)
    if args.limit is not None:
        requests = requests[: args.limit]
    device = resolve_device(args.device)
    # The device and batch size are left out: they change speed, not which answer greedy decoding picks.
    settings = GenerationSettings(args.template, args.max_new_tokens or task.max_new_tokens,
                                  resolve_dtype(args.dtype, device))

    def load() -> Predictor:
        return Predictor(args.model, template=settings.template, max_new_tokens=settings.max_new_tokens,
                         device=device, adapter_dir=args.adapter, dtype=settings.dtype)

    summary = run_predictions(requests, args.out, model_id(args.model, args.adapter), load, settings,
                              batch_size=args.batch_size, desc=f"{task.name} predict", key_of=task.key_of)
    torn = "; dropped a torn last line left by a killed run" if summary.torn_line_dropped else ""
    print(f"{task.name}: {summary.questions} questions, {summary.already_answered} already answered, "
          f"{summary.answered_now} answered now -> {summary.path}{torn}")
    return 0


def _run_score(task: Task, args: argparse.Namespace) -> int:
    from .report import write_report

    report = task.report(args)
    written = write_report(report, args.out_dir)
    print(report.summary)
    print(f"results: {written.json}\ntable:   {written.markdown}\nchart:   {written.chart}")
    for path in written.files:
        print(f"file:    {path}")
    return 0


def _step(step):
    """The phase's function for `llava-lf`'s dispatcher, which maps errors to exit codes."""
    return lambda args: step(TASKS[args.benchmark], args)


def _predict_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a llava-hf checkpoint (exported, or the base)")
    parser.add_argument("--adapter", type=Path, default=None, help="a LoRA adapter to merge onto --model")
    parser.add_argument("--template", default="llava_v1")
    parser.add_argument("--out", type=Path, required=True, help="predictions JSONL (resumed when it exists)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=None, help=f"default {task.max_new_tokens}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions (a smoke run)")


def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True, help="where the JSON, Markdown and PNG go")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score the answered questions when some are unanswered (they are listed)")


def add_subcommand(commands) -> None:
    evaluate = commands.add_parser("eval", help="benchmarks: `predict` (resumable), then `score`")
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True)
    for task in TASKS.values():
        bench = benchmarks.add_parser(task.name, help=task.help)
        phases = bench.add_subparsers(dest="phase", required=True)
        predict = phases.add_parser("predict", help="answer every question into a predictions JSONL (resumable)")
        _predict_arguments(predict, task)
        task.add_arguments(predict, "predict")
        predict.set_defaults(run=_step(_run_predict))
        score = phases.add_parser("score", help="score a predictions JSONL: JSON, Markdown table and PNG chart")
        _score_arguments(score)
        task.add_arguments(score, "score")
        score.set_defaults(run=_step(_run_score))
