"""LLaVA-1.5's ScienceQA question file, `llava_test_CQM-A.json`: each problem's prompt as the file spells it,
its image, its options (the `A. ...` lines) and its answer letter (the gpt turn)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.questions import read_json, require_images

from .scienceqa import LETTERS, Problem, build_prompt

_CONTEXT = "Context: "
_ANSWER_IS = re.compile(r"The answer is ([A-Z])\.")


def _where(path: Path, number: int, pid: object) -> str:
    return f"{path}, problem {number + 1} (id {pid!r})"


def _option_lines(lines: list[str]) -> int:
    """Where the options start: the first line of the run `A. `, `B. `, ... that ends the text (-1: none)."""
    for start in range(len(lines)):
        tail = lines[start:]
        if len(tail) <= len(LETTERS) and all(line.startswith(f"{LETTERS[n]}. ") for n, line in enumerate(tail)):
            return start
    return -1


def _answer_letter(value: str) -> str | None:
    value = value.strip()
    if len(value) == 1 and value in LETTERS:
        return value
    found = _ANSWER_IS.findall(value)
    return found[0] if len(found) == 1 else None


def _problem(raw: object, path: Path, number: int) -> Problem:
    if not isinstance(raw, dict):
        raise LlavaLfError(f"{path}, problem {number + 1}: not an object; use LLaVA's llava_test_CQM-A.json")
    pid = raw.get("id")
    where = _where(path, number, pid)
    turns = raw.get("conversations")
    if not isinstance(pid, str | int) or not isinstance(turns, list) or len(turns) < 2 \
            or not all(isinstance(turn, dict) and isinstance(turn.get("value"), str) for turn in turns[:2]):
        raise LlavaLfError(f"{where}: needs `id` and `conversations` with a human and a gpt turn, each with "
                                 "a `value`; use LLaVA's llava_test_CQM-A.json as released")
    text = turns[0]["value"].replace("<image>", "").strip()
    lines = text.split("\n")
    start = _option_lines(lines)
    if start < 1:
        raise LlavaLfError(f"{where}: the human turn does not end in `A. ...`, `B. ...` option lines; "
                                 "use the CQM format of llava_test_CQM-A.json")
    choices = tuple(line[3:] for line in lines[start:])
    letter = _answer_letter(turns[1]["value"])
    if letter is None or LETTERS.index(letter) >= len(choices):
        raise LlavaLfError(f"{where}: the gpt turn {turns[1]['value']!r} names none of the "
                                 f"{len(choices)} options; it should hold the answer's letter")
    hint = lines[0][len(_CONTEXT):] if lines[0].startswith(_CONTEXT) else ""
    question = "\n".join(lines[1 if hint else 0 : start])
    image = raw.get("image")
    if image is not None and not isinstance(image, str):
        raise LlavaLfError(f"{where}: `image` {image!r} is not a file name")
    return Problem(str(pid), question, choices, LETTERS.index(letter), hint, image or None, None, None, text)


def load_cqma(path: Path) -> list[Problem]:
    """The problems in file order. Subject and grade are not in this file, so only the overall, IMG, TXT
    and NO groups can be formed."""
    raw = read_json(path, "LLaVA-1.5's llava_test_CQM-A.json, as released, as --questions")
    if not isinstance(raw, list):
        raise LlavaLfError(f"{path}: expected a JSON array of problems (llava_test_CQM-A.json); got "
                                 f"{type(raw).__name__}. For ScienceQA's own problems.json use --data")
    problems = [_problem(item, path, number) for number, item in enumerate(raw)]
    seen: set[str] = set()
    for number, problem in enumerate(problems):
        if problem.pid in seen:
            raise LlavaLfError(f"{_where(path, number, problem.pid)}: the id appears twice; ids must be unique")
        seen.add(problem.pid)
    return problems


def cqma_requests(problems: Sequence[Problem], image_folder: Path | None,
                  letter_instruction: bool = True) -> list[PredictionRequest]:
    """As LLaVA's `model_vqa_science.py` asks: the file's text without `<image>`, LLaVA-1.5's letter line,
    the image only for problems that have one; the answer file stores `<image>\\n` + that text for those and
    the bare text otherwise, with the file's `id` as question_id."""
    with_image = [problem for problem in problems if problem.image]
    if with_image and image_folder is None:
        raise LlavaLfError(f"{len(with_image)} problem(s) have an image (first: id {with_image[0].pid}); "
                                 "pass --image-folder, the folder their `image` paths start from")
    return require_images([PredictionRequest(problem.pid, build_prompt(problem, letter_instruction),
                                             image_folder / problem.image if problem.image and image_folder else None,
                                             question_id=problem.pid) for problem in problems],
                          "--image-folder must be the folder the file's `image` paths start from (LLaVA's "
                          "scienceqa/images/test)")
