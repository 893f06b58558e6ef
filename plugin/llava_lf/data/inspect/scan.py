"""Read each dataset once, as a stream: each record's verdict, tokens and figures become rows (`store`), and
its card is a set of queries over them (`queries`). Several datasets make one card, side by side."""

from __future__ import annotations

import gc
import tempfile
from dataclasses import asdict
from itertools import repeat
from pathlib import Path

import duckdb

from llava_lf.data.convert.reader import iter_records
from llava_lf.errors import LlavaLfError

from .figures import record_figures
from .images import add_headers
from .kinds import TypeRule
from .near_duplicates import near_duplicates
from .options import DatasetInput, InspectOptions, not_a_folder
from .queries import DatasetQueries
from .store import TABLES, Inserts, Table, connect, work_folder
from .tokens import TokenCounter
from .verdict import ConverterChecks


def scan_dataset(data: DatasetInput, image_folder: Path | None, options: InspectOptions,
                 counter: TokenCounter | None, con: duckdb.DuckDBPyConnection) -> None:
    """Every record of `data` as rows of the tables `store.TABLES` names."""
    checks = ConverterChecks(image_folder, data.path.parent, stage_one=options.template == "llava_plain")
    rule = TypeRule.for_file(data.path)
    con.execute("BEGIN")  # one transaction: DuckDB writes large appends to the database file, not through its log
    with Inserts(con) as inserts:
        tables = {name: Table(inserts, name) for name in TABLES if name != "headers"}
        records, questions, answers, uses = (tables[name] for name in ("records", "questions", "answers", "uses"))
        used = 0  # image uses so far: their order
        for source in iter_records(data.path):
            record, index = source.value, source.index
            verdict = checks.check(record, index)
            if verdict.files is not None:
                uses.extend(range(used, used + len(verdict.files)), verdict.images, verdict.files)
                used += len(verdict.files)
            if counter is not None and verdict.normalised is not None:
                tables["tokens"].add(counter.count(verdict.normalised.turns, verdict.problems))
            if verdict.problems:  # the first is the reason counted, as in the converter's report
                problem = verdict.problems[0]
                tables["problems"].add((index, problem.reason, problem.field, problem.message, problem.fix))
            figures = record_figures(record, verdict.images, rule)
            if figures is None:  # no readable turns: counted, and rejected by the checks, but no figures
                records.add((index, source.line, verdict.record_id, verdict.converted, False) + _NO_FIGURES)
                continue
            records.add((index, source.line, verdict.record_id, verdict.converted, True, len(verdict.images),
                         figures.source, figures.type, figures.told_by, figures.pairs, figures.words, figures.content,
                         figures.refusals, figures.first_refusal, figures.empty_answers, figures.non_latin))
            questions.extend(figures.questions)
            answers.extend(figures.answers, figures.answer_words, repeat(figures.type, len(figures.answers)))
        for table in tables.values():
            table.flush()
    con.execute("COMMIT")


_NO_FIGURES = (None,) * 11


def _dataset_card(data: DatasetInput, options: InspectOptions, counter: TokenCounter | None, database: Path) -> dict:
    if not data.path.is_file():
        raise LlavaLfError(f"{data.path}: no such file; pass LLaVA JSON/JSONL or a dataset `llava-lf convert` wrote")
    image_folder = data.image_folder or options.image_folder
    if image_folder is not None and not image_folder.is_dir():
        raise LlavaLfError(not_a_folder(image_folder))
    con = connect(database)
    collecting = gc.isenabled()
    try:
        gc.disable()  # the cyclic collector would walk the parsed records again and again; they hold no cycles
        scan_dataset(data, image_folder, options, counter, con)
        if collecting:
            gc.enable()
        if options.image_headers:
            add_headers(con)
        queries = DatasetQueries(con)
        card = queries.card(data.label, str(data.path), options.image_headers, counter is not None,
                            options.cutoff_len)
        card["image_folder"] = str(image_folder) if image_folder is not None else None
        card["near_duplicates"] = None
        if options.near_duplicates:
            card["near_duplicates"] = near_duplicates(queries.readable_images(), options.max_distance, options.workers)
        return card
    finally:
        if collecting:
            gc.enable()
        con.close()
        database.unlink(missing_ok=True)


def inspect_datasets(datasets: list[DatasetInput], options: InspectOptions, work_root: Path | None = None) -> dict:
    """The card's figures (what card.json holds) for the datasets, in the order given. The databases live in a
    work folder under `work_root` (the output folder; default the system's temporary folder) until then."""
    if not datasets:
        raise LlavaLfError("give at least one dataset to inspect")
    labels = [data.label for data in datasets]
    if len(set(labels)) != len(labels):
        raise LlavaLfError(f"two datasets share a label ({', '.join(labels)}); name them as LABEL=PATH")
    counter = None
    if options.tokenizer is not None:
        counter = TokenCounter(options.tokenizer, options.template, options.cutoff_len, options.image_tokens)
    notes = list(counter.notes) if counter is not None else ["no --tokenizer: lengths in words only"]
    if options.image_folder is None and any(data.image_folder is None for data in datasets):
        notes.append("no --image-folder for some datasets: their image paths were not checked and no image was "
                     "read (a converted dataset's are, from its own folder)")
    with work_folder(work_root or Path(tempfile.gettempdir())) as work:
        cards = [_dataset_card(data, options, counter, work / f"{n}.duckdb") for n, data in enumerate(datasets)]
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()}
    return {"generated_by": "llava-lf inspect", "options": settings, "notes": notes, "datasets": cards}
