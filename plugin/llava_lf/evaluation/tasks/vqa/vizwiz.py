"""VizWiz test, scored by the EvalAI server: `score` writes the upload LLaVA's convert_vizwiz_for_submission.py
writes (`{"image", "answer"}` per question, in question-file order, answers EvalAI-processed)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from llava_lf.evaluation.questions import LlavaQuestion, read_question_file
from llava_lf.evaluation.report import Report, listing, markdown_table
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

from .vqa_answers import (
    LatestAnswers,
    ProcessingCounts,
    answer_chart,
    answer_table,
    answered_texts,
    process_answers,
    processing_table,
    read_latest_answers,
    reading_notes,
    write_json_upload,
)

QUESTION_FILE = "llava_test.jsonl"
UPLOAD = "vizwiz_upload.json"
SERVER = "EvalAI challenge 2185 (VizWiz VQA)"


@dataclass(frozen=True)
class VizWizUpload:
    rows: list[dict]  # {"image": file name, "answer": processed}
    missing: list[str]  # unanswered question ids: "" in the upload, only with --allow-partial
    counts: ProcessingCounts
    answer_counts: Counter


def build_upload(questions: Sequence[LlavaQuestion], answers: LatestAnswers, allow_partial: bool) -> VizWizUpload:
    missing = answered_texts([str(q.question_id) for q in questions], answers, allow_partial)
    processed = process_answers(answers)
    rows = [{"image": q.image, "answer": processed.texts.get(str(q.question_id), "")} for q in questions]
    return VizWizUpload(rows, missing, processed.counts, processed.answer_counts)


# The command: `llava-lf eval vizwiz {predict,score}` -------------------------------------------------------

def _report(args: argparse.Namespace) -> Report:
    questions = read_question_file(args.questions)
    answers = read_latest_answers(args.predictions)
    upload = build_upload(questions, answers, args.allow_partial)
    answered = len(questions) - len(upload.missing)
    lines = [
        f"VizWiz is scored by the server: upload `{UPLOAD}` to {SERVER}. No accuracy is computed here.",
        markdown_table(["", "questions"], [["answered", str(answered)],
                                           ["unanswered (uploaded as \"\")", str(len(upload.missing))],
                                           ["in the upload", str(len(upload.rows))]]),
        processing_table(upload.counts),
        answer_table(upload.answer_counts),
    ]
    if upload.missing:
        lines.append(f"Partial (--allow-partial): {len(upload.missing)} questions have no answer and are uploaded as "
                     f"\"\"; LLaVA's converter refuses such a file: {listing(upload.missing)}")
    lines += reading_notes(answers)
    payload = {"server": SERVER, "upload": UPLOAD, "answered": answered, "missing": upload.missing,
               "upload_questions": len(upload.rows), "processor": upload.counts.as_dict(),
               "most_common_answers": upload.answer_counts.most_common(20), "answered_twice": answers.overridden,
               "torn_last_line": answers.torn_tail}
    summary = (f"VizWiz: {answered} of {len(questions)} answered -> {UPLOAD} ({upload.counts.rewritten} answers "
               f"rewritten by the EvalAI processor" + (f"; {len(upload.missing)} uploaded as \"\"" if upload.missing
                                                       else "") + f"); upload it to {SERVER}")
    return Report("vizwiz", "VizWiz (test upload)", payload, "\n\n".join(lines),
                  lambda out: answer_chart(upload.answer_counts, answered, out, "VizWiz: most common answers (processed)"),
                  summary, files=((UPLOAD, lambda path: write_json_upload(upload.rows, path)),))


TASK = Task("vizwiz", "VizWiz test: the EvalAI upload (answers EvalAI-processed, in question-file order)", 128,
            _report, QuestionFiles(f"LLaVA's VizWiz {QUESTION_FILE}", "VizWiz's test images"),
            column=TableColumn("VizWiz", lambda payload: None, upload=UPLOAD))
