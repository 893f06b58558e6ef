"""VQAv2 test-dev, scored by the EvalAI server: `score` writes the upload LLaVA's
convert_vqav2_for_submission.py writes (every test2015 question, EvalAI-processed answers, "" where unasked)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
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

QUESTION_FILE = "llava_vqav2_mscoco_test-dev2015.jsonl"
UPLOAD_QUESTION_FILE = "llava_vqav2_mscoco_test2015.jsonl"
UPLOAD = "vqav2_upload.json"
SERVER = "EvalAI challenge 830 (VQA), phase test-dev"


@dataclass(frozen=True)
class Vqav2Upload:
    rows: list[dict]  # {"question_id": as in the test2015 file, "answer": processed or ""}
    answered: int
    missing: list[str]  # asked (test-dev) but unanswered: "" in the upload, only with --allow-partial
    unasked: int  # test2015 questions outside the asked file: "" in the upload, as LLaVA's converter does
    counts: ProcessingCounts
    answer_counts: Counter  # processed answer -> how many times


def build_upload(asked: Sequence[LlavaQuestion], universe: Sequence[LlavaQuestion], answers: LatestAnswers,
                 allow_partial: bool) -> Vqav2Upload:
    asked_ids = {str(q.question_id) for q in asked}
    universe_ids = {str(q.question_id) for q in universe}
    outside = sorted(asked_ids - universe_ids)
    if outside:
        raise LlavaLfError(f"{len(outside)} asked question(s) are not in the upload question file (first: "
                         f"{outside[:3]}); pass LLaVA's {UPLOAD_QUESTION_FILE} as --upload-questions")
    missing = answered_texts([str(q.question_id) for q in asked], answers, allow_partial)
    processed = process_answers(answers)
    rows = [{"question_id": q.question_id, "answer": processed.texts.get(str(q.question_id), "")} for q in universe]
    return Vqav2Upload(rows, len(processed.texts), missing, len(universe_ids - asked_ids), processed.counts,
                       processed.answer_counts)


# The command: `llava-lf eval vqav2 {predict,score}` -------------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "score":
        parser.add_argument("--upload-questions", type=Path, required=True,
                            help=f"LLaVA's {UPLOAD_QUESTION_FILE} (every question the upload must list)")


def _report(args: argparse.Namespace) -> Report:
    asked, universe = read_question_file(args.questions), read_question_file(args.upload_questions)
    answers = read_latest_answers(args.predictions)
    upload = build_upload(asked, universe, answers, args.allow_partial)
    counts = upload.counts
    lines = [
        f"VQAv2 is scored by the server: upload `{UPLOAD}` to {SERVER}. No accuracy is computed here.",
        markdown_table(["", "questions"], [
            ["answered (test-dev)", str(upload.answered)],
            ["asked but unanswered (uploaded as \"\")", str(len(upload.missing))],
            ["in test2015 but not asked (uploaded as \"\", as LLaVA does)", str(upload.unasked)],
            ["in the upload", str(len(upload.rows))]]),
        processing_table(counts),
        answer_table(upload.answer_counts),
    ]
    if upload.missing:
        lines.append(f"Partial: {len(upload.missing)} asked questions have no answer and are uploaded as \"\" "
                     f"(scored 0 by the server): {listing(upload.missing)}")
    lines += reading_notes(answers)
    payload = {"server": SERVER, "upload": UPLOAD, "answered": upload.answered, "missing": upload.missing,
               "unasked": upload.unasked, "upload_questions": len(upload.rows), "processor": counts.as_dict(),
               "most_common_answers": upload.answer_counts.most_common(20), "answered_twice": answers.overridden,
               "torn_last_line": answers.torn_tail}
    summary = (f"VQAv2: {upload.answered} answered, {len(upload.missing)} missing, {upload.unasked} unasked -> "
               f"{UPLOAD} ({len(upload.rows)} questions; {counts.rewritten} answers rewritten by the EvalAI "
               f"processor); upload it to {SERVER}")
    return Report("vqav2", "VQAv2 (test-dev upload)", payload, "\n\n".join(lines),
                  lambda out: answer_chart(upload.answer_counts, upload.answered, out,
                                           "VQAv2: most common answers (processed)"),
                  summary, files=((UPLOAD, lambda path: write_json_upload(upload.rows, path)),))


TASK = Task("vqav2", "VQAv2 test-dev: the EvalAI upload (every test2015 question, answers EvalAI-processed)", 128,
            _report, QuestionFiles(f"LLaVA's {QUESTION_FILE} (what is asked)", "COCO test2015 images"), _arguments,
            column=TableColumn("VQAv2", lambda payload: None, upload=UPLOAD))
