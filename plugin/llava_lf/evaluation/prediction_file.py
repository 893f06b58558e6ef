"""The predictions JSONL: one answer per question id, appended as answers arrive, so a run resumes.

A run killed mid-write leaves at most one torn last line; reading drops it (the question is simply
asked again). Anything else that does not parse is an error naming the line, never skipped quietly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llava_lf.errors import LlavaLfError

if TYPE_CHECKING:
    from .predict import PredictionRequest, Predictor


class PredictionFileError(LlavaLfError):
    pass


@dataclass(frozen=True)
class PredictionRecord:
    question_id: str
    prompt: str
    text: str  # the model's answer
    model_id: str  # which model answered: base path, plus adapter path when one was applied


@dataclass(frozen=True)
class PredictRunSummary:
    path: Path
    questions: int
    already_answered: int
    answered_now: int
    torn_line_dropped: bool


def read_predictions(path: Path) -> tuple[dict[str, PredictionRecord], bool]:
    """Records keyed by question id, and whether a torn last line was dropped."""
    if not path.exists():
        return {}, False
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    # The last element is b"" after a complete final line; anything else is a torn write.
    torn = lines[-1] != b""
    records: dict[str, PredictionRecord] = {}
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            # Extra fields are fine, so answer files from LLaVA's own scripts can be scored too.
            record = PredictionRecord(str(row["question_id"]), str(row.get("prompt", "")), str(row["text"]),
                                      str(row.get("model_id", "")))
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise PredictionFileError(
                f"{path}, line {number}: not a prediction record ({type(error).__name__}: {error}); fix or delete "
                "that line (a record needs question_id and text; prompt and model_id are optional)") from None
        if record.question_id in records:
            raise PredictionFileError(
                f"{path}, line {number}: question_id {record.question_id!r} appears twice; keep one of the lines")
        records[record.question_id] = record
    return records, torn


def _drop_torn_tail(path: Path) -> None:
    raw = path.read_bytes()
    with open(path, "r+b") as handle:
        handle.truncate(raw.rfind(b"\n") + 1)


def _check_same_model(path: Path, records: dict[str, PredictionRecord], model_id: str) -> None:
    others = sorted({record.model_id for record in records.values()} - {model_id})
    if others:
        raise PredictionFileError(
            f"{path} holds answers from another model ({others[0]}), not {model_id}; "
            "write to a new --out file (or delete this one) so two models' answers are never mixed")


def run_predictions(requests: Sequence[PredictionRequest], path: Path, model_id: str,
                    predictor_factory: Callable[[], Predictor], batch_size: int = 32,
                    desc: str = "predict") -> PredictRunSummary:
    """Answer every request not yet in `path`, appending each answer as soon as its batch is done.

    The model is loaded only when something is left to answer, so re-running a finished run is free.
    """
    keys = [request.key for request in requests]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise PredictionFileError(f"question id {duplicate!r} is asked twice; question ids must be unique")
    records, torn = read_predictions(path)
    _check_same_model(path, records, model_id)
    if torn:
        _drop_torn_tail(path)
    pending = [request for request in requests if request.key not in records]
    summary = PredictRunSummary(path, len(requests), len(requests) - len(pending), len(pending), torn)
    if not pending:
        return summary
    path.parent.mkdir(parents=True, exist_ok=True)
    prompts = {request.key: request.question for request in pending}
    predictor = predictor_factory()
    with open(path, "a", encoding="utf-8") as handle:
        for prediction in predictor.predict(pending, batch_size=batch_size, desc=desc):
            record = PredictionRecord(prediction.key, prompts[prediction.key], prediction.answer, model_id)
            handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            handle.flush()  # a killed run keeps every answer written so far
    return summary


def answers_for(question_ids: Sequence[str], path: Path, allow_partial: bool = False) -> tuple[dict[str, str], list[str]]:
    """Answer text per question id, and the ids left unanswered (only allowed with `allow_partial`)."""
    if not path.is_file():
        raise PredictionFileError(f"no predictions file at {path}; run the benchmark's `predict` phase first")
    records, _ = read_predictions(path)
    wanted = set(question_ids)
    unknown = sorted(set(records) - wanted)
    if unknown:
        raise PredictionFileError(
            f"{path} answers {len(unknown)} question(s) this benchmark does not ask (first: {unknown[:3]}); "
            "check that the predictions and the question files (and split) belong together")
    missing = [qid for qid in question_ids if qid not in records]
    if missing and not allow_partial:
        raise PredictionFileError(
            f"{path} answers {len(records)} of {len(question_ids)} questions (first missing: {missing[:3]}); "
            "run `predict` again to finish (it resumes), or pass --allow-partial to score the answered ones")
    return {qid: records[qid].text for qid in question_ids if qid in records}, missing
