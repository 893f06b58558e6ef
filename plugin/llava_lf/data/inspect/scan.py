"""Read each dataset once, as a stream: each record's verdict, tokens and figures become rows (`store`), and
its card is a set of queries over them (`queries`). Several datasets make one card, side by side."""

from __future__ import annotations

import gc
import tempfile
from dataclasses import asdict, replace
from itertools import repeat
from pathlib import Path

import duckdb

from llava_lf.data.convert.reader import iter_records
from llava_lf.errors import LlavaLfError

from .figures import record_figures
from .images import add_headers
from .kinds import TypeRule
from .model_tokens import data_source, estimated_text_tokens, model_figures
from .model_view import ModelView, load_model_view
from .near_duplicates import near_duplicates
from .options import DatasetInput, InspectOptions, not_a_folder
from .queries import DatasetQueries
from .store import TABLES, Inserts, Table, connect, work_folder
from .tokens import TokenCounter
from .verdict import ConverterChecks


def scan_dataset(data: DatasetInput, image_folder: Path | None, options: InspectOptions,
                 counter: TokenCounter | None, con: duckdb.DuckDBPyConnection, view: ModelView | None = None) -> None:
    """Every record of `data` as rows of the tables `store.TABLES` names (`samples` with a model view)."""
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
                uses.extend(range(used, used + len(verdict.files)), verdict.images, verdict.files,
                            repeat(index, len(verdict.files)))
                used += len(verdict.files)
            if verdict.normalised is not None:
                counted = counter.count(verdict.normalised.turns, verdict.problems) if counter is not None else None
                if counted is not None and counter.image_tokens is not None:
                    tables["tokens"].add(counted)
                if view is not None:  # text apart: the images' tokens join from their headers after the scan
                    text = counted[0] - len(verdict.images) * (counter.image_tokens or 1) if counted is not None \
                        else estimated_text_tokens(verdict.normalised.turns)
                    tables["samples"].add((index, text, len(verdict.images), data_source(record)))
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


def _dataset_card(data: DatasetInput, options: InspectOptions, counter: TokenCounter | None, database: Path,
                  view: ModelView | None = None) -> dict:
    if not data.path.is_file():
        raise LlavaLfError(f"{data.path}: no such file; pass LLaVA JSON/JSONL or a dataset `llava-lf convert` wrote")
    image_folder = data.image_folder or options.image_folder
    if image_folder is not None and not image_folder.is_dir():
        raise LlavaLfError(not_a_folder(image_folder))
    con = connect(database)
    collecting = gc.isenabled()
    try:
        gc.disable()  # the cyclic collector would walk the parsed records again and again; they hold no cycles
        scan_dataset(data, image_folder, options, counter, con, view)
        if collecting:
            gc.enable()
        if options.image_headers:
            add_headers(con)
        queries = DatasetQueries(con)
        card = queries.card(data.label, str(data.path), options.image_headers,
                            counter is not None and counter.image_tokens is not None, options.cutoff_len)
        card["model"] = model_figures(con, view, options.cutoff_len) if view is not None else None
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
    view = load_model_view(options.model) if options.model is not None else None
    options = _with_model(options, view)
    counter, tokenizer = None, options.tokenizer or (view.tokenizer if view is not None else None)
    if tokenizer is not None:
        counter = _token_counter(tokenizer, options, view)
    notes = list(counter.notes) if counter is not None else ["no --tokenizer: lengths in words only"]
    if view is not None:
        notes += _model_notes(view, counter)
    if options.image_folder is None and any(data.image_folder is None for data in datasets):
        notes.append("no --image-folder for some datasets: their image paths were not checked and no image was "
                     "read (a converted dataset's are, from its own folder)")
    with work_folder(work_root or Path(tempfile.gettempdir())) as work:
        cards = [_dataset_card(data, options, counter, work / f"{n}.duckdb", view) for n, data in enumerate(datasets)]
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()}
    settings["model"] = view.settings() if view is not None else None
    return {"generated_by": "llava-lf inspect", "options": settings, "notes": notes, "datasets": cards}


def _with_model(options: InspectOptions, view: ModelView | None) -> InspectOptions:
    """The template resolved (--template, else the preset's chat format, else llava_v1), checked against the view."""
    template = options.template or (view.template if view is not None else None) or "llava_v1"
    if view is not None and options.image_tokens is not None:
        raise LlavaLfError(f"--image-tokens with --model {view.name}: the model fixes each image's count; give one")
    if view is not None and view.needs_sizes and not options.image_headers:
        raise LlavaLfError(f"--model {view.name} is LLaVA-NeXT: its image tokens follow each image's size, which "
                           "--no-image-headers leaves unread; leave it out")
    return replace(options, template=template)


def _token_counter(tokenizer: Path, options: InspectOptions, view: ModelView | None) -> TokenCounter:
    """Tokens per record with the host's template. With a LLaVA-NeXT view each image counts one token here (its
    placeholder; the view adds its size's count after the scan), so the lengths table leaves tokens out."""
    if view is None:
        return TokenCounter(tokenizer, options.template, options.cutoff_len, options.image_tokens)
    if view.needs_sizes:
        return TokenCounter(tokenizer, options.template, None, 1, per_record=False)
    return TokenCounter(tokenizer, options.template, options.cutoff_len, view.fixed)


def _model_notes(view: ModelView, counter: TokenCounter | None) -> list[str]:
    text = (f"text tokens counted with {counter.tokenizer} and template {counter.template}" if counter is not None
            else "no tokenizer: text tokens estimated as characters / 4, rounded up, without the template's own text "
                 "(pass --tokenizer for exact counts)")
    images = (f"{view.fixed} tokens per image" if view.fixed is not None else
              f"AnyRes: each image's tokens from its size after the host's resize (image_max_pixels "
              f"{view.geometry.max_pixels:,}), read from its file header")
    return [f"--model {view.name} ({view.family}): {images}; {view.note}; {text}"]
