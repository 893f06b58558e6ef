"""SEED-Bench (v1): image and video (middle frame) multiple choice, scored as LLaVA's
convert_seed_for_submission.py does (the answer's text must equal the letter exactly), with its upload file."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.prediction_file import PredictionRecord, records_for
from llava_lf.evaluation.questions import read_json
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, markdown_table, notes
from llava_lf.evaluation.tally import Tally
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

UPLOAD_FILE = "seed_upload.jsonl"


@dataclass(frozen=True)
class SeedQuestion:
    question_id: str  # SEED's id, a string: "101669" (image), "v0"-like (video)
    type_id: int
    data_type: str  # image or video
    answer: str  # A..D

    @property
    def id_as_scored(self) -> int | str:
        """The id the official script looks the answer up by: int when it parses as one, else the string. So
        an answer file that spells image ids as strings scores 0 on them (LLaVA's own file writes ints)."""
        try:
            return int(self.question_id)
        except ValueError:
            return self.question_id


@dataclass
class SeedResult:
    overall: dict[str, Tally]  # all, image, video
    types: dict[str, Tally]  # by type name, in type-id order
    missing: list[str] = field(default_factory=list)  # unanswered: counted wrong
    id_type_mismatch: list[str] = field(default_factory=list)  # answered under a string id: counted wrong
    right_but_for_format: list[str] = field(default_factory=list)  # e.g. "A." or " a": wrong by exact match


@dataclass(frozen=True)
class SeedBench:
    type_names: dict[int, str]
    questions: list[SeedQuestion]


def load_seed(path: Path) -> SeedBench:
    """SEED-Bench.json: `question_type` (name -> id) and `questions` (with question_id, question_type_id,
    data_type, answer), in SEED's order."""
    data = read_json(path, "SEED-Bench.json (v1) as --annotations")
    if not isinstance(data, dict) or not isinstance(data.get("question_type"), dict) \
            or not isinstance(data.get("questions"), list):
        raise LlavaLfError(f"{path}: SEED-Bench.json is an object with `question_type` (name -> id) and "
                           "`questions` (a list); this file is not")
    names = {type_id: name for name, type_id in data["question_type"].items()}
    questions, problems = [], []
    for index, row in enumerate(data["questions"]):
        where = f"questions[{index}]"
        if not isinstance(row, dict):
            problems.append(f"{where}: an object is needed")
            continue
        where += f" (question_id {row.get('question_id')!r})"
        absent = [name for name, ok in (
            ("question_id", isinstance(row.get("question_id"), str | int) and not isinstance(row.get("question_id"), bool)),
            ("question_type_id", row.get("question_type_id") in names),
            ("data_type", row.get("data_type") in ("image", "video")),
            ("answer", isinstance(row.get("answer"), str))) if not ok]
        if absent:
            problems.append(f"{where}: bad or absent {', '.join(absent)} (question_type_id must be one of "
                            f"`question_type`'s ids; data_type image or video)")
            continue
        questions.append(SeedQuestion(str(row["question_id"]), row["question_type_id"], row["data_type"], row["answer"]))
    if problems:
        raise LlavaLfError([f"{path}: {len(problems)} bad SEED question(s); use SEED-Bench.json unchanged"]
                           + problems[:20])
    return SeedBench(names, questions)


def score(bench: SeedBench, records: dict[str, PredictionRecord]) -> SeedResult:
    """Exact `text == answer`; an answer is found only under the id the official script looks up (see
    `SeedQuestion.id_as_scored`). Unanswered questions count wrong, as in the official accuracy."""
    result = SeedResult({"all": Tally(), "image": Tally(), "video": Tally()},
                        {bench.type_names[t]: Tally() for t in sorted({q.type_id for q in bench.questions})})
    for question in bench.questions:
        record = records.get(question.question_id)
        if record is None:
            result.missing.append(question.question_id)
            right = False
        elif record.question_id != question.id_as_scored:  # "101669" is not 101669 in the official lookup
            result.id_type_mismatch.append(question.question_id)
            right = False
        else:
            right = record.text == question.answer
            if not right and record.text.strip().strip(".()").upper() == question.answer:
                result.right_but_for_format.append(question.question_id)
        for group in (result.overall["all"], result.overall[question.data_type],
                      result.types[bench.type_names[question.type_id]]):
            group.add(right)
    return result


def upload_rows(bench: SeedBench, records: dict[str, PredictionRecord]) -> list[dict]:
    """convert_seed_for_submission.py's upload: SEED's id and the raw answer, in SEED's order (an unanswered
    question is left out; the official script raises instead)."""
    return [{"question_id": q.question_id, "prediction": records[q.question_id].text}
            for q in bench.questions if q.question_id in records]


# The command: `llava-lf eval seed {predict,score}` ---------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "score":
        parser.add_argument("--annotations", type=Path, required=True, help="SEED-Bench.json (v1)")


def _report(args: argparse.Namespace) -> Report:
    bench = load_seed(args.annotations)
    records, _ = records_for([q.question_id for q in bench.questions], args.predictions, args.allow_partial)
    result = score(bench, records)
    overall = result.overall
    column = published.column("SEED")
    rows = [Row("all", "total (image and video)", overall["all"].questions, overall["all"].percent),
            Row("image", "image", overall["image"].questions, overall["image"].percent),
            Row("video", "video (middle frame)", overall["video"].questions, overall["video"].percent)]
    uploaded = upload_rows(bench, records)
    markdown = "\n\n".join(filter(None, [
        "SEED-Bench (v1), accuracy in percent: the answer must be exactly the option's letter "
        "(convert_seed_for_submission.py's rule; `A.` or `(A)` count wrong).",
        comparison_table(rows, column, digits=2), notes(column),
        markdown_table(["question type", "n", "accuracy"],
                       [[name, str(g.questions), cell(g.percent, 2)] for name, g in result.types.items()]),
        "A type with no right answer shows 0 (where each of its questions is answered, the official script "
        "raises a KeyError instead)."
        if any(g.correct == 0 for g in result.types.values()) else "",
        "A data type with no questions shows – (the official script divides by zero there)."
        if any(g.questions == 0 for g in overall.values()) else "",
        f"Answered under a string id where SEED's scorer looks the answer up by an int ({len(result.id_type_mismatch)}, "
        f"counted wrong as the official script does; write image ids as numbers, as LLaVA's question file does): "
        f"{listing(result.id_type_mismatch)}" if result.id_type_mismatch else "",
        f"Wrong only for their format, e.g. `A.` or `(a)` ({len(result.right_but_for_format)}): "
        f"{listing(result.right_but_for_format)}" if result.right_but_for_format else "",
        f"Not answered ({len(result.missing)}, counted wrong as the official script does; left out of "
        f"`{UPLOAD_FILE}`, where the official script raises): {listing(result.missing)}" if result.missing else "",
        f"`{UPLOAD_FILE}` holds {len(uploaded)} answers in SEED's order for the leaderboard (optional).",
    ]))
    payload = {
        "accuracy": {key: g.percent for key, g in overall.items()} | {
            "types": {name: g.percent for name, g in result.types.items()}},
        "groups": {key: g.as_dict() for key, g in overall.items()},
        "types": {name: g.as_dict() for name, g in result.types.items()},
        "missing": result.missing, "id_type_mismatch": result.id_type_mismatch,
        "right_but_for_format": result.right_but_for_format, "uploaded": len(uploaded),
    }
    summary = (f"SEED-Bench: total {cell(overall['all'].percent, 2)}% of {overall['all'].questions} (image "
               f"{cell(overall['image'].percent, 2)}%, video {cell(overall['video'].percent, 2)}%)"
               + (f"; {len(result.missing)} unanswered counted wrong and left out of the upload"
                  if result.missing else "")
               + (f"; {len(result.id_type_mismatch)} string ids counted wrong" if result.id_type_mismatch else ""))

    def write_upload(path: Path) -> None:
        path.write_text("".join(json.dumps(row) + "\n" for row in uploaded), encoding="utf-8")

    return Report("seed", "SEED-Bench (v1)", payload, markdown,
                  lambda out: bar_chart(rows, column, out, "SEED-Bench", "accuracy (%)"), summary,
                  files=((UPLOAD_FILE, write_upload),))


TASK = Task("seed", "SEED-Bench accuracy (image, video, per type) and its leaderboard upload file", 128, _report,
            QuestionFiles("LLaVA's llava-seed-bench.jsonl",
                          "holding SEED-Bench-image/ and SEED-Bench-video-image/ (the middle frames)", scored="no"),
            _arguments, column=TableColumn("SEED", lambda payload: payload["accuracy"]["all"], upload=None))
