"""`llava-lf eval table`: predict and score every benchmark the YAML names, in the paper's column order, then one
Markdown table and one PNG with the model beside LLaVA-1.5's published numbers (LLaVA-NeXT's for a NeXT model). Resumable: predictions resume,
scoring is re-run (judge replies come from the cache). Under torchrun every rank answers its share of each benchmark
(`parts.py`); rank 0 alone scores and writes the table."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_lf.common.charts import bar_panels
from llava_lf.errors import LlavaLfError

from . import phases, published
from .predict import Predictor
from .ranks import Ranks, ranks_from_env
from .report import markdown_table
from .table_config import TableConfig, option_argv
from .tasks import TASKS, Task

# Where each server-scored column's upload goes.
SERVERS = {
    "VQAv2": "the EvalAI VQA challenge (test-dev phase)",
    "VizWiz": "the EvalAI VizWiz VQA challenge",
    "MMB": "the OpenCompass MMBench server (dev split)",
    "MMB-CN": "the OpenCompass MMBench server (dev split, CN)",
}


@dataclass(frozen=True)
class ColumnOutcome:
    column: str
    benchmark: str
    status: str  # scored, upload, skipped, failed; predicted (a rank other than 0: its share answered)
    value: float | None = None
    detail: str = ""  # why it was skipped or failed; the upload file
    results: str = ""  # the benchmark's results folder


@dataclass(frozen=True)
class TableResult:
    outcomes: list[ColumnOutcome]
    markdown: Path
    chart: Path
    summary: str


class _RaisingParser(argparse.ArgumentParser):
    """A benchmark's options parsed from the YAML: a mistake is an error naming the benchmark, not an exit."""

    def error(self, message: str):
        raise LlavaLfError(f"{self.prog}: {message}")


def _parser(task: Task, phase: str) -> _RaisingParser:
    parser = _RaisingParser(prog=f"benchmarks: {task.name} ({phase})", add_help=False)
    phases.add_phase_arguments(parser, task, phase)
    return parser


def _accepted(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _phase_args(task: Task, phase: str, options: dict[str, object], given: dict[str, object]) -> argparse.Namespace:
    """Parse `options` (the table's own and shared ones) plus `given` (the benchmark's entry) for one phase; each
    key of the entry must be an option of predict or score."""
    parser = _parser(task, phase)
    accepted = _accepted(parser)
    mine = {key: value for key, value in given.items() if "--" + key.replace("_", "-") in accepted}
    shared = {key: value for key, value in options.items() if "--" + key.replace("_", "-") in accepted}
    return parser.parse_args(option_argv(shared | mine))


def _check_entry(task: Task, given: dict[str, object]) -> None:
    known = _accepted(_parser(task, "predict")) | _accepted(_parser(task, "score"))
    unknown = sorted(key for key in given if "--" + str(key).replace("_", "-") not in known)
    if unknown:
        raise LlavaLfError(f"benchmarks: {task.name}: unknown option(s) {', '.join(unknown)}; see "
                           f"`llava-lf eval {task.name} predict --help` and `... score --help`")


def _needs_judge(task: Task) -> bool:
    return any("--judge-base-url" in action.option_strings and action.required
               for action in _parser(task, "score")._actions)


def _run_one(task: Task, config: TableConfig, given: dict[str, object], loaded: dict[tuple, Predictor],
             ranks: Ranks) -> ColumnOutcome:
    column = task.column.column
    _check_entry(task, given)
    if _needs_judge(task) and "judge_base_url" not in config.judge:
        return ColumnOutcome(column, task.name, "skipped", detail="needs a judge: add `judge: {base_url, model}`")
    predictions = config.out_dir / "predictions" / f"{task.name}.jsonl"
    results = config.out_dir / task.name
    predict_args = _phase_args(task, "predict", config.predict | {"out": predictions}, given)
    print(phases.describe_predict(task, phases.predict(task, predict_args, loaded)), flush=True)
    if not ranks.main:
        return ColumnOutcome(column, task.name, "predicted", detail=f"{ranks}: rank 0 scores it")
    score_options = config.judge | {"predictions": predictions, "out_dir": results,
                                    "allow_partial": config.allow_partial or predict_args.limit is not None}
    payload, written, summary = phases.score(task, _phase_args(task, "score", score_options, given))
    print(summary, flush=True)
    value = task.column.headline(payload)
    if value is None:
        upload = results / task.column.upload if task.column.upload else results
        return ColumnOutcome(column, task.name, "upload", detail=str(upload), results=str(results))
    return ColumnOutcome(column, task.name, "scored", round(float(value), task.column.digits), results=str(results))


def _table_tasks() -> list[Task]:
    by_column = {task.column.column: task for task in TASKS.values() if task.column is not None}
    return [by_column[name] for name in published.LLAVA_1_5 if name in by_column]


def run_table(config: TableConfig) -> TableResult:
    tasks = _table_tasks()
    names = {task.name for task in tasks}
    stray = sorted(set(config.benchmarks) - names)
    if stray:
        raise LlavaLfError(f"{config.source}: benchmarks: {', '.join(stray)} not in the table; it takes "
                           f"{', '.join(sorted(names))}")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    ranks = ranks_from_env()
    loaded: dict[tuple, Predictor] = {}
    outcomes: list[ColumnOutcome] = []
    for number, task in enumerate(tasks, start=1):
        column = task.column.column
        given = config.benchmarks.get(task.name)
        if given is None:
            outcomes.append(ColumnOutcome(column, task.name, "skipped", detail="not in the YAML"))
            print(f"[{number}/{len(tasks)}] {column} ({task.name}): skipped, not in the YAML", flush=True)
            continue
        print(f"[{number}/{len(tasks)}] {column} ({task.name})", flush=True)
        try:
            outcome = _run_one(task, config, given, loaded, ranks)
        except (LlavaLfError, OSError) as error:  # one benchmark's bad file must not cost the others their run
            outcome = ColumnOutcome(column, task.name, "failed", detail=str(error))
            print(f"{column} ({task.name}) failed: {error}", flush=True)
        outcomes.append(outcome)
    if not ranks.main:
        return _rank_result(config, ranks, outcomes)
    return _write(config, outcomes)


def _rank_result(config: TableConfig, ranks: Ranks, outcomes: list[ColumnOutcome]) -> TableResult:
    """What a rank other than 0 did: its share of each benchmark's answers; the table is rank 0's to write. A failed
    benchmark failed on rank 0 too, which reports it: exiting with an error here would have torchrun stop rank 0
    before it writes the table."""
    predicted = sum(o.status == "predicted" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    summary = (f"table: {ranks} answered its share of {predicted} benchmark(s) ({failed} failed, see rank 0); rank 0 "
               f"scores them and writes {config.out_dir / 'table.md'}")
    return TableResult(outcomes, config.out_dir / "table.md", config.out_dir / "table.png", summary)


def _outcome_cell(outcome: ColumnOutcome) -> str:
    if outcome.status == "scored":
        return f"{outcome.value:g}"
    return outcome.status


def published_table(model: object) -> published.PublishedTable:
    """LLaVA-NeXT's published rows for a NeXT checkpoint (its config's model_type), LLaVA-1.5's otherwise."""
    config = Path(str(model)) / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):  # not a local folder: the predict phase names the problem
        model_type = None
    return published.LLAVA_1_6_TABLE if model_type == "llava_next" else published.LLAVA_1_5_TABLE


def _published_cell(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _write(config: TableConfig, outcomes: list[ColumnOutcome]) -> TableResult:
    model = str(config.predict.get("model")) + (f" + {config.predict['adapter']}" if config.predict.get("adapter") else "")
    table = published_table(config.predict.get("model"))
    header = [""] + [o.column for o in outcomes]
    rows = [["this run"] + [_outcome_cell(o) for o in outcomes]]
    rows += [[name] + [_published_cell(table.values[o.column][index]) for o in outcomes]
             for index, name in enumerate(table.models)]
    uploads = [f"- {o.column}: send `{o.detail}` to {SERVERS.get(o.column, 'the benchmark server')}"
               for o in outcomes if o.status == "upload"]
    skipped = [f"- {o.column} ({o.benchmark}): {o.detail}" for o in outcomes if o.status == "skipped"]
    failed = [f"- {o.column} ({o.benchmark}): {o.detail}" for o in outcomes if o.status == "failed"]
    sources = [f"- {column}: {note}" for column, note in table.notes.items()]
    markdown = "\n\n".join(filter(None, [
        f"# {table.title}'s benchmark table\n\nModel: `{model}`. Published rows: {table.source}. Percent, MME "
        "in points; POPE is the mean F1 over its three splits.",
        markdown_table(header, rows),
        "Server-scored (upload the file, the server gives the figure):\n" + "\n".join(uploads) if uploads else "",
        "Skipped:\n" + "\n".join(skipped) if skipped else "",
        "Failed (fix and run the table again: finished benchmarks resume):\n" + "\n".join(failed) if failed else "",
        "What each column is:\n" + "\n".join(sources),
    ])) + "\n"
    md_path, png_path = config.out_dir / "table.md", config.out_dir / "table.png"
    md_path.write_text(markdown, encoding="utf-8")
    (config.out_dir / "table.json").write_text(json.dumps(
        {"model": model, "outcomes": [asdict(o) for o in outcomes],
         "published": {name: dict(zip(table.models, values)) for name, values in table.values.items()}},
        indent=2, ensure_ascii=False), encoding="utf-8")
    labels = ["this run", *table.labels]
    panels = {o.column: list(zip(labels, [o.value] + list(table.values[o.column]))) for o in outcomes}
    short = "/".join(Path(str(config.predict.get("model"))).parts[-2:])
    bar_panels(panels, png_path, f"{short} beside {table.title} (published)", notes={o.column: o.status for o in outcomes})
    counts = {status: sum(o.status == status for o in outcomes) for status in ("scored", "upload", "skipped", "failed")}
    summary = (f"table: {counts['scored']} scored, {counts['upload']} to upload, {counts['skipped']} skipped, "
               f"{counts['failed']} failed\ntable:   {md_path}\nchart:   {png_path}")
    if counts["failed"]:
        raise LlavaLfError([summary] + [line[2:] for line in failed])
    return TableResult(outcomes, md_path, png_path, summary)
