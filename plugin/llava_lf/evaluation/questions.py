"""LLaVA's question files (`{"question_id", "image", "text", "category"}` per line), read as they are, and the
prediction requests they make: the file's `text` is the prompt, its suffix already inside."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .predict import PredictionRequest
from .prediction_file import id_prompt_key

_SHOWN = 20  # problems listed in one error; the rest are counted


@dataclass(frozen=True)
class LlavaQuestion:
    question_id: int | str  # as the file spells it: LLaVA's scorers compare ids with their type
    image: str  # relative to the image folder
    text: str
    category: str | None
    line: int


def _problem(row: object, number: int) -> str | None:
    if not isinstance(row, dict):
        return f"line {number}: a JSON object is needed, found {type(row).__name__}"
    qid = row.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        return f"line {number}: `question_id` must be a number or a string, found {qid!r}"
    for name in ("image", "text"):
        if not isinstance(row.get(name), str):
            return f"line {number} (question_id {qid!r}): `{name}` must be a string, found {row.get(name)!r}"
    if row.get("category") is not None and not isinstance(row["category"], str):
        return f"line {number} (question_id {qid!r}): `category` must be a string, found {row['category']!r}"
    return None


def read_question_file(path: Path) -> list[LlavaQuestion]:
    """Every question of a LLaVA question file, in file order; every bad line is named at once."""
    if not path.is_file():
        raise LlavaLfError(f"no question file at {path}; pass the benchmark's LLaVA question file (JSONL)")
    questions, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"line {number}: not JSON ({error})")
                continue
            if (problem := _problem(row, number)) is not None:
                problems.append(problem)
                continue
            questions.append(LlavaQuestion(row["question_id"], row["image"], row["text"], row.get("category"), number))
    if problems:
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise LlavaLfError(f"{path}: {len(problems)} bad question line(s); each needs question_id, image and text:\n  "
                           + "\n  ".join(problems[:_SHOWN]) + more)
    if not questions:
        raise LlavaLfError(f"{path} holds no questions; pass the benchmark's LLaVA question file")
    return questions


def read_json(path: Path, what: str) -> object:
    """A benchmark's own JSON file; `what` names it and its option for the errors ("SEED-Bench.json as
    --annotations")."""
    if not path.is_file():
        raise LlavaLfError(f"no file at {path}; pass {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LlavaLfError(f"{path}: not JSON ({error}); pass {what}") from None


def require_images(requests: list[PredictionRequest], fix: str) -> list[PredictionRequest]:
    """The requests, once every image they name is a file; else one error: how many are not, the first, `fix`."""
    missing = sorted({str(r.image) for r in requests if r.image is not None and not r.image.is_file()})
    if missing:
        raise LlavaLfError(f"{len(missing)} image(s) missing (first: {missing[0]}); {fix}")
    return requests


def question_key(question: LlavaQuestion, repeated_ids: bool) -> str:
    """How answers find their question: by id, or by id and prompt where the file repeats ids."""
    return id_prompt_key(question.question_id, question.text) if repeated_ids else str(question.question_id)


def loader_requests(questions: Sequence[LlavaQuestion], image_folder: Path,
                    repeated_ids: bool = False) -> list[PredictionRequest]:
    """What LLaVA's loader runner asks: the text verbatim after the image, stored verbatim as the prompt."""
    return require_images([PredictionRequest(question_key(q, repeated_ids), q.text, image_folder / q.image,
                                             question_id=q.question_id, prompt=q.text) for q in questions],
                          "pass the folder that holds the benchmark's images as --image-folder")
