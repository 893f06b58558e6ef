"""`predict` across processes: each rank answers its share of the batches into a part of its own, and rank 0
merges the parts into the one answer file.

Parts live in a folder beside the answer file, named after it: `--out preds/pope.jsonl` gives `preds/pope.jsonl.parts/`,
where rank R of N appends to `rank-R-of-N.jsonl` (the same records as the answer file). Every `rank-*-of-*.jsonl`
there is read, whichever rank count wrote it, so a run resumes from any earlier one: killed with 2 ranks, finished
with 1 or 4. A plain one-process run uses this path too while such a folder exists, and writes straight into the
answer file when none does.

A run: every rank reads what is answered (the answer file and every part) and the ranks meet, so they all plan from
the same files; the fixed batches still holding an unanswered question (`prediction_file.batches_to_ask`) are dealt
out in turn, batch i of the list to rank i mod N; each rank answers its batches and the ranks meet again; then rank 0
appends to the answer file, in question order, every answer the parts hold that the file lacks, and removes the
folder. The batches are those of a one-process run, so each answer comes out of the same batch, and the merged file
is the one a single process writes, byte for byte. A rank killed mid-run loses at most its torn last line; the
next run asks that question again and keeps everything else.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from llava_lf.errors import LlavaLfError

from .prediction_file import (
    AnswerFile,
    KeyOf,
    PredictionFileError,
    PredictionRecord,
    PredictRunSummary,
    Questions,
    append_answers,
    batches_to_ask,
    by_id,
    check_resumable,
    distinct_questions,
    drop_torn_tail,
    read_answer_file,
    run_predictions,
)
from .ranks import Ranks, barrier, meet

if TYPE_CHECKING:
    from .predict import GenerationSettings, PredictionRequest, Predictor


def parts_folder(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def part_path(out: Path, ranks: Ranks) -> Path:
    return parts_folder(out) / f"rank-{ranks.rank}-of-{ranks.world_size}.jsonl"


def part_files(out: Path) -> list[Path]:
    """Every part of `out`, whichever rank count wrote it."""
    folder = parts_folder(out)
    return sorted(folder.glob("rank-*-of-*.jsonl")) if folder.is_dir() else []


def deal(batches: Sequence[list[PredictionRequest]], ranks: Ranks) -> list[list[PredictionRequest]]:
    """This rank's batches: every N-th of the list, from its own rank on (the ranks' shares differ by one batch
    at most)."""
    return list(batches[ranks.rank :: ranks.world_size])


def _union(files: Sequence[AnswerFile]) -> tuple[dict[str, PredictionRecord], dict[str, bytes]]:
    """Every answer of `files` (the answer file first), once. The same question answered in two files with two
    texts is an error: a part that belongs to another run."""
    records: dict[str, PredictionRecord] = {}
    raw: dict[str, bytes] = {}
    where: dict[str, Path] = {}
    for answers in files:
        for key, record in answers.records.items():
            if key not in records:
                records[key], raw[key], where[key] = record, answers.raw[key], answers.path
            elif records[key].text != record.text:
                raise PredictionFileError(
                    f"question_id {record.question_id!r} is answered differently in {where[key]} and {answers.path}; "
                    f"delete the part folder {parts_folder(files[0].path)} (its answers are asked again) or the "
                    "answer file")
    return records, raw


def _read_all(out: Path, key_of: KeyOf) -> list[AnswerFile]:
    return [read_answer_file(out, key_of)] + [read_answer_file(path, key_of) for path in part_files(out)]


def merge_parts(out: Path, questions: Questions, key_of: KeyOf = by_id) -> int:
    """Append to `out` every answer its parts hold and it lacks, the asked questions in question order (then any
    others the parts hold, as found), and remove the parts; how many lines were appended. Every asked question
    must be answered by then. Killed midway, it is done again: what reached `out` is not appended twice."""
    files = _read_all(out, key_of)
    main = files[0]
    _, raw = _union(files)
    new = [request.key for request in questions.requests if request.key not in main.records]
    missing = [key for key in new if key not in raw]
    if missing:
        raise PredictionFileError(f"{out}: {len(missing)} question(s) are answered neither there nor in its parts "
                                  f"(first: {missing[:3]}); run `predict` again to finish")
    asked = set(new)
    new += [key for key in raw if key not in main.records and key not in asked]
    if main.torn:
        drop_torn_tail(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab") as handle:
        if main.unterminated:
            handle.write(b"\n")
        handle.write(b"".join(raw[key] + b"\n" for key in new))
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the parts that also hold these answers go
    shutil.rmtree(parts_folder(out))
    return len(new)


def _failed(ranks: Ranks, failures: dict[int, str], what: str) -> LlavaLfError:
    shown = "\n".join(f"  rank {rank}: {text}" for rank, text in sorted(failures.items()))
    return LlavaLfError(f"{ranks.world_size} processes {what}; {len(failures)} failed:\n{shown}")


def run_on_ranks(requests: Sequence[PredictionRequest], out: Path, model_id: str,
                 predictor_factory: Callable[[], Predictor], settings: GenerationSettings, ranks: Ranks,
                 batch_size: int = 32, desc: str = "predict", key_of: KeyOf = by_id,
                 wait: Callable[[], None] | None = None) -> PredictRunSummary:
    """This rank's share of the run (see the module's docstring); rank 0 also merges. Every rank calls it with the
    same arguments. `wait` is the meeting barrier (default: gloo's across the launch's ranks)."""
    wait = barrier(ranks) if wait is None else wait
    folder = parts_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = asdict(settings)
    error: BaseException | None = None
    try:
        files = _read_all(out, key_of)
        questions = distinct_questions(requests)
        for answers in files:
            check_resumable(answers.path, answers.records, questions, model_id, wanted)
        answered, _ = _union(files)
        mine = deal(batches_to_ask(questions.requests, answered, batch_size), ranks)
    except Exception as caught:  # every rank must reach the meeting, or the others wait for it
        error = caught
    failures = meet(ranks, wait, folder, "read", None if error is None else str(error))
    if error is not None:
        raise error
    if failures:
        raise _failed(ranks, failures, "could not start")
    part = part_path(out, ranks)
    own = next((answers for answers in files if answers.path == part), None)
    written = 0
    try:
        if mine:
            if own is not None and own.torn:
                drop_torn_tail(part)  # this rank's own part: no other rank appends to it
            written = append_answers(part, predictor_factory(), mine, answered, questions, model_id, wanted,
                                     own is not None and own.unterminated, f"{desc} ({ranks})")
    except Exception as caught:
        error = caught
    failures = meet(ranks, wait, folder, "answered", None if error is None else f"{type(error).__name__}: {error}",
                    listen=ranks.main)  # rank 0 removes the notes with the parts once merged
    if error is not None:
        raise error
    before = sum(request.key in answered for request in questions.requests)
    torn = any(answers.torn for answers in files)
    if not ranks.main:
        return PredictRunSummary(out, len(questions.requests), before, written, torn, ranks.rank, ranks.world_size, part)
    if failures:
        raise _failed(ranks, failures, "answered") from None
    merge_parts(out, questions, key_of)
    return PredictRunSummary(out, len(questions.requests), before, len(questions.requests) - before, torn,
                             ranks.rank, ranks.world_size, part)


def predict_into(requests: Sequence[PredictionRequest], out: Path, model_id: str,
                 predictor_factory: Callable[[], Predictor], settings: GenerationSettings, ranks: Ranks,
                 batch_size: int = 32, desc: str = "predict", key_of: KeyOf = by_id) -> PredictRunSummary:
    """A one-process run straight into `out`, or a run through parts: under several ranks, or while parts of an
    earlier such run are there to be taken in."""
    if ranks.world_size == 1 and not parts_folder(out).exists():
        return run_predictions(requests, out, model_id, predictor_factory, settings, batch_size, desc, key_of)
    return run_on_ranks(requests, out, model_id, predictor_factory, settings, ranks, batch_size, desc, key_of)
