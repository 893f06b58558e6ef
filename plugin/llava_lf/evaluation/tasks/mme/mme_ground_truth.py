"""MME's ground truth: each LLaVA question matched to its line in the `MME_Benchmark_release_version` tree, as
LLaVA's convert_answer_to_mme.py matches it, and the eval_tool lines that converter writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.questions import LlavaQuestion, question_key

SHORT_ANSWER = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no."


@dataclass(frozen=True)
class MmeQuestion:
    key: str  # question_id and prompt: two questions share each image's id
    question_id: str  # the image, e.g. "artwork/images/14777.jpg"
    subtask: str  # the first part of question_id
    gt_file: str  # e.g. "14777.txt": the eval_tool line's first field
    gt_question: str  # the GT line's question, e.g. "Is ...? Please answer yes or no."
    gt_answer: str  # "Yes" or "No" as the GT file spells it
    line: int  # in the question file


def gt_file_name(question_id: str) -> str:
    """The converter's GT file: the id's last part up to its first dot, plus .txt."""
    return question_id.split("/")[-1].split(".")[0] + ".txt"


def gt_question(prompt: str, known: set[str] | dict[str, str]) -> str:
    """The converter's question: the short-answer sentence taken out (then stripped), MME's own "Please answer
    yes or no." put back; with two spaces before it when that is how the GT file spells it."""
    if SHORT_ANSWER in prompt:
        prompt = prompt.replace(SHORT_ANSWER, "").strip()
    if YES_NO not in prompt:
        prompt = f"{prompt} {YES_NO}"
        if prompt not in known:
            prompt = prompt.replace(f" {YES_NO}", f"  {YES_NO}")
    return prompt


def _answers_folder(data_dir: Path, subtask: str) -> Path:
    """artwork, celebrity, landmark, posters and scene keep `images/` and `questions_answers_YN/`; the other
    subtasks keep each image's .txt beside it."""
    folder = data_dir / subtask
    return folder / "questions_answers_YN" if (folder / "images").exists() else folder


def _read_gt_file(path: Path) -> dict[str, str]:
    """question -> answer, from lines `question<TAB>Yes|No`."""
    answers: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2 or parts[1].lower() not in ("yes", "no"):
            raise LlavaLfError(f"{path}, line {number}: an MME ground-truth line is `question<TAB>Yes` or "
                               f"`question<TAB>No`, found {line!r}; use the MME release's files unchanged")
        answers[parts[0]] = parts[1]
    return answers


def match_ground_truth(questions: Sequence[LlavaQuestion], data_dir: Path) -> list[MmeQuestion]:
    """Each question with its GT file and line; every question the tree cannot answer is named at once."""
    if not data_dir.is_dir():
        raise LlavaLfError(f"no MME tree at {data_dir}; pass MME_Benchmark_release_version as --data")
    cache: dict[Path, dict[str, str]] = {}
    matched, problems = [], []
    for q in questions:
        question_id = str(q.question_id)
        subtask = question_id.split("/")[0]
        folder = _answers_folder(data_dir, subtask)
        path = folder / gt_file_name(question_id)
        if not path.is_file() and (folder / (Path(question_id).stem + ".txt")).is_file():
            path = folder / (Path(question_id).stem + ".txt")  # a name with two dots (the converter would fail)
        if not path.is_file():
            problems.append(f"line {q.line} ({question_id}): no ground-truth file {path}")
            continue
        if path not in cache:
            cache[path] = _read_gt_file(path)
        question = gt_question(q.text, cache[path])
        if question not in cache[path]:
            problems.append(f"line {q.line} ({question_id}): {path.name} has no line for {question!r}")
            continue
        matched.append(MmeQuestion(question_key(q, repeated_ids=True), question_id, subtask, path.name, question,
                                   cache[path][question], q.line))
    if problems:
        raise LlavaLfError([f"{len(problems)} MME question(s) without ground truth under {data_dir}; pass the "
                            "MME_Benchmark_release_version folder that belongs to llava_mme.jsonl"] + problems[:20])
    return matched


def one_line(answer: str) -> str:
    """The answer as one eval_tool field: a tab, CR or LF would break calculation.py's line format (it reads
    lines with universal newlines and splits on tabs), so each becomes a space. The yes/no reading of the
    first four characters is unchanged by this."""
    return answer.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def eval_tool_line(question: MmeQuestion, answer: str) -> str:
    """`file<TAB>question<TAB>GT<TAB>answer` as convert_answer_to_mme.py writes it."""
    return "\t".join((question.gt_file, question.gt_question, question.gt_answer, one_line(answer))) + "\n"
