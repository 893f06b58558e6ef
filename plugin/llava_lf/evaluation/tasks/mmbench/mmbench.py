"""`llava-lf eval mmbench` and `mmbench-cn`: LLaVA-1.5's MMBench dev runs. `score` writes the workbook the
OpenCompass server scores (the paper's figure) and a local circular estimate from the TSV's answers."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_lf.evaluation import published
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import PredictionRecord, answered, read_answers
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, markdown_table
from llava_lf.evaluation.tasks import TableColumn, Task

from .mmbench_circular import CircularResult, CircularRow, circular_score
from .mmbench_data import MMBenchRow, decode_images, load_rows, prediction_requests, prompt_text, read_table, rows_of
from .mmbench_upload import upload_sheet, write_workbook


@dataclass(frozen=True)
class Variant:
    name: str  # the command and the report's file stem
    title: str
    tsv: str  # the file LLaVA's script reads
    lang: str  # which instruction line the model sees
    column: str  # in the paper's table
    upload: str  # the workbook's name in OUT_DIR


MMBENCH_EN = Variant("mmbench", "MMBench", "mmbench_dev_20230712.tsv", "en", "MMB", "mmbench_upload.xlsx")
MMBENCH_CN_VARIANT = Variant("mmbench-cn", "MMBench-CN", "mmbench_dev_cn_20231003.tsv", "cn", "MMB-CN",
                             "mmbench_cn_upload.xlsx")


def _arguments(variant: Variant, parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--data", type=Path, required=True, help=f"LLaVA's {variant.tsv} (images inside, base64)")
    if phase == "predict":
        parser.add_argument("--image-cache", type=Path, default=None,
                            help="folder the TSV's images are decoded into, once (default: beside --out, "
                                 "OUT_STEM.images)")


def _requests(variant: Variant, args: argparse.Namespace) -> list[PredictionRequest]:
    rows = load_rows(args.data, images=True)
    folder = args.image_cache or args.out.with_name(f"{args.out.stem}.images")
    # --limit keeps the first N requests; decoding only their images keeps a smoke run quick
    cache = decode_images(rows, folder, args.data, count=args.limit)
    asked = rows if args.limit is None else rows[: args.limit]
    return prediction_requests(asked, cache.paths, variant.lang)


def _index_key(record: PredictionRecord) -> str:
    question_id = record.question_id
    if isinstance(question_id, str) and question_id.strip().lstrip("-").isdigit():
        return str(int(question_id))  # LLaVA writes the TSV's int; a string spelling of it is read the same
    return str(question_id)


def tsv_answers(path: Path, rows: Sequence[MMBenchRow], allow_partial: bool) -> tuple[dict[int, str], list[int], list[int]]:
    """Answer text per TSV index, as LLaVA's converter takes it: a later line for the same index wins
    (LLaVA's `--all-rounds` writes one line per rotation). Also the unanswered indices and the indices
    whose stored prompt is not the one this TSV gives (another TSV's answers, or a later round's)."""
    prompts = {str(row.index): prompt_text(row) for row in rows}
    records, missing = answered(
        list(prompts), read_answers(path, key_of=_index_key, repeats="latest"), allow_partial,
        hint="; their question_ids are no index of the TSV (MMBench and MMBench-CN have their own TSVs)",
        if_partial="(unanswered rows go up empty and count wrong here)")
    differing = [int(key) for key, record in records.items() if record.prompt and record.prompt != prompts[key]]
    return {int(key): record.text for key, record in records.items()}, [int(key) for key in missing], differing


def _circular(rows: Sequence[MMBenchRow], answers: dict[int, str]) -> CircularResult | None:
    scored = [CircularRow(row.index, row.choices, row.answer, row.category, row.l2_category)
              for row in rows if row.answer is not None]
    return circular_score(scored, answers) if scored else None


def _estimate_text(variant: Variant, result: CircularResult | None) -> list[str]:
    if result is None:
        return ["The TSV carries no answers (a test split): no local estimate; the server's figure is the only one."]
    rows = [Row("all", "local circular estimate (rules only)", result.overall.questions, result.overall.percent)]
    reference = published.column(variant.column)
    category_rows = [[name, str(acc.questions), cell(acc.percent)] for name, acc in result.categories.items()]
    l2_rows = [[name, str(acc.questions), cell(acc.percent)] for name, acc in result.l2_categories.items()]
    rules = ", ".join(f"{name}: {count}" for name, count in result.rules.items())
    return [
        "**Local estimate, not the server's figure.** Circular accuracy from the TSV's answers: a question counts "
        "only when every rotated copy is answered right; letters are read by the rule-based step of MMBench's "
        "scorer (VLMEvalKit's `can_infer`), with no GPT judge, so answers the rules cannot read count wrong. "
        "The published numbers beside it are the server's.",
        comparison_table(rows, reference),
        f"First rotation alone (no circular copies): {cell(result.single_pass.percent)}% of "
        f"{result.single_pass.questions}. Answers read by rule: {rules}.",
        markdown_table(["category", "questions", "circular (%)"], category_rows) if category_rows else "",
        markdown_table(["l2-category", "questions", "circular (%)"], l2_rows) if l2_rows else "",
        f"Unreadable by the rules ({len(result.unreadable)} rows, counted wrong; the server's judge may read them): "
        f"{listing([str(i) for i in result.unreadable])}" if result.unreadable else "",
        f"Read as a refusal, Z ({len(result.refused)} rows, wrong): {listing([str(i) for i in result.refused])}"
        if result.refused else "",
    ]


def _report(variant: Variant, args: argparse.Namespace) -> Report:
    table = read_table(args.data, images=False)
    rows = rows_of(table, args.data)
    answers, missing, differing = tsv_answers(args.predictions, rows, args.allow_partial)
    sheet = upload_sheet(table, answers)
    # the estimate reads the text as uploaded (control characters removed), as the server would
    at_index, at_prediction = sheet.header.index("index"), sheet.header.index("prediction")
    uploaded = {row[at_index]: row[at_prediction] for row in sheet.rows}
    result = _circular(rows, {index: uploaded[index] for index in answers})
    groups = len({row.index % 1_000_000 for row in rows})
    cleaned = [asdict(cell) for cell in sheet.cleaned]
    payload = {"benchmark": variant.name, "data": args.data.name, "rows": len(rows), "questions": groups,
               "answered": len(answers), "missing": missing, "upload": variant.upload,
               "circular": None if result is None else result.as_dict(),
               "control_characters": {"removed": sheet.removed_characters, "cells": cleaned},
               "prompt_differs": differing}
    control = (f"Control characters Excel cannot hold were removed from {len(cleaned)} cell(s) "
               f"({sheet.removed_characters} characters; LLaVA's converter crashes on them): rows "
               f"{listing([str(c.index) for c in sheet.cleaned])}." if cleaned else "")
    markdown = "\n\n".join(filter(None, [
        f"{variant.title}, `{args.data.name}`: {len(rows)} rows ({groups} questions with their circular copies), "
        f"{len(answers)} answered.",
        f"**The paper's figure comes from the OpenCompass server.** Upload `{variant.upload}` (written beside this "
        "file; LLaVA's converter's layout: the raw answer text, no letter extraction) to MMBench's evaluation page.",
        *_estimate_text(variant, result), control,
        f"Stored prompts that differ from this TSV's ({len(differing)}: another TSV's answers, or LLaVA's "
        f"`--all-rounds`, whose last round wins as in LLaVA's converter): {listing([str(i) for i in differing])}"
        if differing else "",
        f"Not answered ({len(missing)}; empty in the upload, wrong here): {listing([str(i) for i in missing])}"
        if missing else "",
    ]))
    estimate = "no local estimate (no answers in the TSV)" if result is None else (
        f"local circular estimate {cell(result.overall.percent)}% of {result.overall.questions} "
        f"(rules only, {len(result.unreadable)} unreadable rows counted wrong)")
    summary = (f"{variant.title}: {estimate}; upload {variant.upload} to the OpenCompass server for the paper's "
               f"figure" + (f"; removed {sheet.removed_characters} control characters from {len(cleaned)} cells"
                            if cleaned else ""))
    chart_rows = [] if result is None else (
        [Row("all", "overall", result.overall.questions, result.overall.percent)]
        + [Row(name, name, acc.questions, acc.percent) for name, acc in result.categories.items()])
    return Report(variant.name.replace("-", "_"), f"{variant.title} (dev)", payload, markdown,
                  lambda out: bar_chart(chart_rows or [Row("none", "no answers in the TSV", 0, None)],
                                        published.column(variant.column), out,
                                        f"{variant.title}: local circular estimate (rules only)", "accuracy (%)"),
                  summary, files=((variant.upload, lambda path: write_workbook(sheet, path)),))


def _task(variant: Variant, help_text: str) -> Task:
    return Task(variant.name, help_text, 1024, lambda args: _report(variant, args),
                add_arguments=lambda parser, phase: _arguments(variant, parser, phase),
                requests=lambda args: _requests(variant, args),
                column=TableColumn(variant.column, lambda payload: None, upload=variant.upload))


MMBENCH = _task(MMBENCH_EN, "MMBench dev: the OpenCompass upload workbook, and a local circular estimate")
MMBENCH_CN = _task(MMBENCH_CN_VARIANT, "MMBench-CN dev: the OpenCompass upload workbook, and a local circular estimate")
TASKS = (MMBENCH, MMBENCH_CN)
