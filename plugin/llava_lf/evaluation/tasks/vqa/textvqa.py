"""TextVQA val with OCR tokens in the prompt, scored locally with M4C's soft accuracy as LLaVA's
eval_textvqa.py scores it: each answer finds its annotation by (question_id, question taken back out of the
prompt, lower-cased), and the accuracy is the mean over the answers."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.prediction_file import answers_for, by_id_and_prompt
from llava_lf.evaluation.questions import LlavaQuestion, question_key, read_json, read_question_file
from llava_lf.evaluation.report import Report, Row, bar_chart, comparison_table, listing, markdown_table
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

from .vqa_answers import SOFT_SCORE_ANSWERS, normalize_answer, soft_scores

QUESTION_FILE = "llava_textvqa_val_v051_ocr.jsonl"
ANNOTATION_FILE = "TextVQA_0.5.1_val.json"
OCR_LINE = "Reference OCR token: "
_OLD_OCR_PROMPT = re.compile(r"Question: (.*?) Short answer:", re.DOTALL)  # LLaVA-1.0's prompt layout
_SHOWN = 10


def question_in_prompt(prompt: str) -> str | None:
    """The question LLaVA's eval_textvqa.py takes back out of a prompt, lower-cased; None where that script
    fails (its `assert False`, or no match in the old "OCR tokens:" layout)."""
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        found = _OLD_OCR_PROMPT.search(prompt)
        question = found.group(1) if found else None
    elif OCR_LINE in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith(OCR_LINE.rstrip()) else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        question = None
    return None if question is None else question.lower()


@dataclass(frozen=True)
class TextVqaAnnotation:
    image_id: str
    question: str
    answers: tuple[str, ...]
    index: int  # position in the file's `data`, for messages


@dataclass(frozen=True)
class Annotations:
    by_key: dict[tuple[str, str], TextVqaAnnotation]  # (image_id, question lower-cased); the last one wins
    shadowed: int  # annotations replaced by a later one with the same key (as in LLaVA's dict)


def read_annotations(path: Path) -> Annotations:
    data = read_json(path, f"TextVQA's {ANNOTATION_FILE} as --annotations")
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LlavaLfError(f"{path} has no `data` list; pass TextVQA's {ANNOTATION_FILE}")
    by_key: dict[tuple[str, str], TextVqaAnnotation] = {}
    problems, shadowed = [], 0
    for index, entry in enumerate(entries):
        entry = entry if isinstance(entry, dict) else {}
        answers = entry.get("answers")
        if not (isinstance(entry.get("image_id"), str) and isinstance(entry.get("question"), str)
                and isinstance(answers, list) and all(isinstance(a, str) for a in answers)):
            problems.append(f"data[{index}] (question_id {entry.get('question_id', '?')}): needs `image_id` and "
                            "`question` (strings) and `answers` (a list of strings)")
            continue
        key = (entry["image_id"], entry["question"].lower())
        shadowed += key in by_key
        by_key[key] = TextVqaAnnotation(entry["image_id"], entry["question"], tuple(answers), index)
    if problems:
        raise LlavaLfError(f"{path}: {len(problems)} bad annotation(s); pass TextVQA's {ANNOTATION_FILE}:\n  "
                           + "\n  ".join(problems[:_SHOWN]))
    return Annotations(by_key, shadowed)


@dataclass(frozen=True)
class ScoredAnswer:
    question: LlavaQuestion
    answer: str
    processed: str
    score: float  # M4C's soft score in [0, 1]


@dataclass(frozen=True)
class TextVqaResult:
    scored: list[ScoredAnswer]  # one per answered question line, in question-file order
    missing: list[str]  # keys of question lines without an answer

    @property
    def accuracy(self) -> float:
        """Percent; M4C's mean over answers (a partial file scores what it answered)."""
        return 100 * sum(s.score for s in self.scored) / len(self.scored)


def _annotation_for(question: LlavaQuestion, annotations: Annotations, path: Path,
                    problems: list[str]) -> TextVqaAnnotation | None:
    asked = question_in_prompt(question.text)
    where = f"question line {question.line} (question_id {question.question_id!r})"
    if asked is None:
        problems.append(f"{where}: LLaVA's eval_textvqa.py cannot take the question out of its text "
                        f"{question.text[:80]!r} (it needs 'question\\n{OCR_LINE}...\\ninstruction' or "
                        f"'question\\ninstruction'); use LLaVA's {QUESTION_FILE}")
        return None
    annotation = annotations.by_key.get((str(question.question_id), asked))
    if annotation is None:
        problems.append(f"{where}: no annotation in {path.name} for image {question.question_id!r} and question "
                        f"{asked!r} (LLaVA's script stops with a KeyError); pass the val {ANNOTATION_FILE}")
    elif len(annotation.answers) != SOFT_SCORE_ANSWERS:
        problems.append(f"{where}: {path.name} data[{annotation.index}] has {len(annotation.answers)} answers; M4C "
                        f"needs exactly {SOFT_SCORE_ANSWERS} (its assert); pass the unedited {ANNOTATION_FILE}")
        return None
    return annotation


def score(questions: Sequence[LlavaQuestion], answers: dict[str, str], annotations: Annotations,
          annotation_path: Path) -> TextVqaResult:
    """Every answered question line scored; any line LLaVA's script would crash on is an error, all named."""
    scored, missing, problems = [], [], []
    for question in questions:
        key = question_key(question, repeated_ids=True)
        if key not in answers:
            missing.append(key)
            continue
        annotation = _annotation_for(question, annotations, annotation_path, problems)
        if annotation is not None:
            answer = answers[key]
            processed = normalize_answer(answer)
            scored.append(ScoredAnswer(question, answer, processed, soft_scores(annotation.answers).get(processed, 0.0)))
    if problems:
        raise LlavaLfError(f"{len(problems)} answered question(s) cannot be scored:\n  " + "\n  ".join(problems[:_SHOWN])
                           + (f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""))
    if not scored:
        raise LlavaLfError("no answered questions to score (LLaVA's script divides by zero); run `predict` first")
    return TextVqaResult(scored, missing)


# The command: `llava-lf eval textvqa {predict,score}` ----------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "score":
        parser.add_argument("--annotations", type=Path, required=True, help=f"TextVQA's {ANNOTATION_FILE}")


def _key_text(key: str) -> str:
    question_id, _, prompt = key.partition("\x1f")
    return f"{question_id}: {prompt.splitlines()[0] if prompt else ''}"


def _report(args: argparse.Namespace) -> Report:
    questions = read_question_file(args.questions)
    annotations = read_annotations(args.annotations)
    keys = [question_key(q, repeated_ids=True) for q in questions]
    answers, _ = answers_for(keys, args.predictions, args.allow_partial,
                             f"; the answers must come from {args.questions.name}", key_of=by_id_and_prompt)
    result = score(questions, answers, annotations, args.annotations)
    full = sum(s.score == 1 for s in result.scored)
    none = sum(s.score == 0 for s in result.scored)
    samples = len(result.scored)
    rows = [Row("all", "TextVQA val", samples, result.accuracy)]
    partial = (f"Partial: {len(result.missing)} of {len(questions)} question lines have no answer and are left out "
               f"of the mean, as LLaVA's script does with a partial file: "
               f"{listing([_key_text(k) for k in result.missing])}") if result.missing else ""
    markdown = "\n\n".join(filter(None, [
        f"TextVQA val accuracy (M4C), in percent: {samples} answers scored.",
        comparison_table(rows, published.column("TextVQA"), digits=2),
        markdown_table(["answers", "n"], [["full score (1)", str(full)], ["partly right", str(samples - full - none)],
                                          ["no score (0)", str(none)]]),
        partial,
        f"{annotations.shadowed} annotation(s) share (image_id, question) with a later one; as in LLaVA's script "
        "the later one's answers are used." if annotations.shadowed else "",
    ]))
    payload = {"accuracy": {"all": result.accuracy}, "samples": samples, "question_lines": len(questions),
               "full_score": full, "no_score": none, "missing": [_key_text(k) for k in result.missing],
               "partial": bool(result.missing), "shadowed_annotations": annotations.shadowed,
               "answers": [{"question_id": s.question.question_id, "line": s.question.line, "answer": s.answer,
                            "processed": s.processed, "score": s.score} for s in result.scored]}
    summary = (f"TextVQA: Samples: {samples}  Accuracy: {result.accuracy:.2f}%"
               + (f" (partial: {len(result.missing)} question lines unanswered)" if result.missing else ""))
    return Report("textvqa", "TextVQA", payload, markdown,
                  lambda out: bar_chart(rows, published.column("TextVQA"), out, "TextVQA val (M4C accuracy)",
                                        "percent"),
                  summary)


TASK = Task("textvqa", "TextVQA val accuracy (M4C soft accuracy over 10 human answers), OCR tokens in the prompt",
            128, _report, QuestionFiles(f"LLaVA's {QUESTION_FILE}", "TextVQA's train_images folder"), _arguments,
            key_of=by_id_and_prompt, column=TableColumn("TextVQA", lambda payload: payload["accuracy"]["all"]))
