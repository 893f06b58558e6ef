"""GQA testdev-balanced: LLaVA's answers cleaned as convert_gqa_for_eval.py does, scored as GQA's eval.py does
(exact equality over the balanced questions), with the predictions file that eval.py reads."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.prediction_file import PredictionRecord, answered, read_answers
from llava_lf.evaluation.questions import read_json, read_question_file
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, markdown_table, notes
from llava_lf.evaluation.tally import Tally
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

# GQA's eval.py leaves these steps out of a question's reasoning length (the final "query" step).
_NOT_A_STEP = ("exist", "query: name", "choose name")
PREDICTIONS_FILE = "gqa_predictions.json"


@dataclass(frozen=True)
class GqaQuestion:
    question_id: str
    answer: str
    balanced: bool
    structural: str  # verify, query, choose, logical, compare: `query` is open, the rest binary
    semantic: str  # rel, attr, obj, cat, global
    global_group: str | None  # the answer distribution's group (None: not in the distribution)
    words: int
    steps: int


@dataclass
class GqaResult:
    overall: dict[str, Tally]  # all, binary, open
    structural: dict[str, Tally]
    semantic: dict[str, Tally]
    steps: dict[int, Tally]
    words: dict[int, Tally]
    distribution: float | None  # eval.py's chi-square / 100 (lower is better); None: no global group at all
    missing: list[str] = field(default_factory=list)  # balanced questions without an answer (counted wrong)
    right_if_stripped: list[str] = field(default_factory=list)  # wrong only for surrounding whitespace


def clean_prediction(text: str) -> str:
    """convert_gqa_for_eval.py's cleaning: trailing periods off, lower case; no strip, no other rule."""
    return text.rstrip(".").lower()


def _steps(operations: list, where: str, problems: list[str]) -> int:
    steps = 0
    for operation in operations:
        if not isinstance(operation, dict) or not {"operation", "argument"} <= operation.keys():
            problems.append(f"{where}: `semantic` entries need `operation` and `argument`, found {operation!r}")
            return 0
        spelled = f"{operation['operation']}: {operation['argument']}"
        steps += not any(marker in spelled for marker in _NOT_A_STEP)
    return steps


def _question(qid: str, record: object, problems: list[str]) -> GqaQuestion | None:
    where = f"question {qid!r}"
    if not isinstance(record, dict):
        problems.append(f"{where}: an object is needed, found {type(record).__name__}")
        return None
    types, groups = record.get("types"), record.get("groups")
    checks = [
        (isinstance(record.get("question"), str), "`question` (a string)"),
        (isinstance(record.get("answer"), str), "`answer` (a string)"),
        (isinstance(record.get("isBalanced"), bool), "`isBalanced` (true or false)"),
        (isinstance(types, dict) and isinstance(types.get("structural"), str)
         and isinstance(types.get("semantic"), str), "`types.structural` and `types.semantic` (strings)"),
        (isinstance(groups, dict) and "global" in groups, "`groups.global` (a string or null)"),
        (isinstance(record.get("semantic"), list), "`semantic` (the list of operations)"),
    ]
    absent = [name for ok, name in checks if not ok]
    if absent:
        problems.append(f"{where} lacks " + ", ".join(absent))
        return None
    return GqaQuestion(qid, record["answer"], record["isBalanced"], types["structural"], types["semantic"],
                       groups["global"], len(record["question"].split()), _steps(record["semantic"], where, problems))


def load_annotations(path: Path) -> list[GqaQuestion]:
    """GQA's `testdev_balanced_questions.json` (a dict from question id to its record), in file order."""
    data = read_json(path, "GQA's testdev_balanced_questions.json as --annotations")
    if not isinstance(data, dict) or not data:
        raise LlavaLfError(f"{path}: GQA's questions file is an object from question id to question; this is not one")
    problems: list[str] = []
    questions = [q for qid, record in data.items() if (q := _question(qid, record, problems)) is not None]
    if problems:
        raise LlavaLfError([f"{path}: {len(problems)} bad GQA question(s); use GQA's own file unchanged"]
                           + problems[:20])
    return questions


def _chi_square_over_groups(gold: dict[str, dict[str, int]], predicted: dict[str, dict[str, int]]) -> float | None:
    """eval.py's distribution: chi-square of predicted against gold answer counts per global group, weighted by
    the group's size, over all groups; None where eval.py divides by zero (no group)."""
    weighted, total = 0.0, 0
    for group, counts in gold.items():
        size = sum(counts.values())
        chi = sum((predicted.get(group, {}).get(answer, 0) - expected) ** 2 / expected
                  for answer, expected in counts.items())
        weighted += chi * size
        total += size
    return weighted / total / 100 if total else None


def score(questions: Sequence[GqaQuestion], predictions: dict[str, str]) -> GqaResult:
    """Accuracy over the balanced questions; `predictions` are cleaned answers by question id. An unanswered
    balanced question counts wrong (eval.py refuses to run instead)."""
    result = GqaResult({"all": Tally(), "binary": Tally(), "open": Tally()}, {}, {}, {}, {}, None)
    gold: dict[str, dict[str, int]] = {}
    predicted: dict[str, dict[str, int]] = {}
    for q in questions:
        if not q.balanced:
            continue
        prediction = predictions.get(q.question_id)
        right = prediction == q.answer
        if prediction is None:
            result.missing.append(q.question_id)
        elif not right and prediction.strip() == q.answer:
            result.right_if_stripped.append(q.question_id)
        for group in (result.overall["all"], result.overall["open" if q.structural == "query" else "binary"],
                      result.structural.setdefault(q.structural, Tally()),
                      result.semantic.setdefault(q.semantic, Tally()),
                      result.steps.setdefault(q.steps, Tally()), result.words.setdefault(q.words, Tally())):
            group.add(right)
        if q.global_group is not None:
            counts = gold.setdefault(q.global_group, {})
            counts[q.answer] = counts.get(q.answer, 0) + 1
            if prediction is not None:
                guesses = predicted.setdefault(q.global_group, {})
                guesses[prediction] = guesses.get(prediction, 0) + 1
    result.distribution = _chi_square_over_groups(gold, predicted)
    return result


def prediction_rows(records: Sequence[PredictionRecord]) -> list[dict]:
    """What convert_gqa_for_eval.py writes for eval.py: one row per answer, in answer-file order."""
    return [{"questionId": record.question_id, "prediction": clean_prediction(record.text)} for record in records]


# The command: `llava-lf eval gqa {predict,score}` ----------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "score":
        parser.add_argument("--annotations", type=Path, required=True, help="GQA's testdev_balanced_questions.json")


def _asked(args: argparse.Namespace, questions: list[GqaQuestion]) -> list[str]:
    """The question ids answers may come for: the question file's (all in the annotations), or every one."""
    known = [q.question_id for q in questions]
    if args.questions is None:
        return known
    asked = [str(q.question_id) for q in read_question_file(args.questions)]
    unknown = sorted(set(asked) - set(known))
    if unknown:
        raise LlavaLfError(f"{args.questions} asks {len(unknown)} question(s) that {args.annotations} lacks (first: "
                           f"{unknown[:3]}); pass the annotations of the same split (testdev_balanced_questions.json)")
    return asked


def _group_table(title: str, groups: dict) -> str:
    return markdown_table([title, "n", "accuracy"], [[str(key), str(g.questions), cell(g.percent, 2)]
                                                     for key, g in sorted(groups.items(), key=lambda kv: str(kv[0]))])


def _report(args: argparse.Namespace) -> Report:
    questions = load_annotations(args.annotations)
    keys = _asked(args, questions)
    answers = read_answers(args.predictions)
    records, missing = answered(keys, answers, args.allow_partial, needed=[q.question_id for q in questions if q.balanced],
                                if_partial="to count them wrong (GQA's eval.py refuses a file missing any)")
    result = score(questions, {key: clean_prediction(record.text) for key, record in records.items()})
    in_file_order = list(answers.records.values())
    overall = result.overall["all"]
    if overall.questions == 0:
        raise LlavaLfError(f"{args.annotations} has no balanced question (isBalanced true): nothing to score")
    rows = [Row(key, label, g.questions, g.percent) for key, label, g in
            (("all", "accuracy", overall), ("binary", "binary (yes/no)", result.overall["binary"]),
             ("open", "open (query)", result.overall["open"]))]
    column = published.column("GQA")
    distribution = ("not computed: no balanced question has a global group (eval.py divides by zero here)"
                    if result.distribution is None else f"{result.distribution:.2f} (lower is better)")
    markdown = "\n\n".join(filter(None, [
        "GQA testdev-balanced, accuracy in percent (exact match after convert_gqa_for_eval.py's cleaning: "
        "trailing periods removed, lower case).",
        comparison_table(rows, column, digits=2), notes(column),
        f"Distribution (eval.py's chi-square / 100): {distribution}.",
        _group_table("structural type", result.structural), _group_table("semantic type", result.semantic),
        f"Wrong only for surrounding whitespace, as eval.py counts them ({len(result.right_if_stripped)}): "
        f"{listing(result.right_if_stripped)}" if result.right_if_stripped else "",
        f"Not answered ({len(missing)} balanced, counted wrong; eval.py refuses a file missing any): "
        f"{listing(missing)}" if missing else "",
        f"`{PREDICTIONS_FILE}` holds the {len(in_file_order)} answers in answer-file order, as "
        "convert_gqa_for_eval.py writes them: rename it testdev_balanced_predictions.json for GQA's eval.py.",
    ]))
    payload = {
        "accuracy": {key: g.percent for key, g in result.overall.items()},
        "questions": {key: g.questions for key, g in result.overall.items()},
        "correct": {key: g.correct for key, g in result.overall.items()},
        "structural": {key: g.as_dict() for key, g in result.structural.items()},
        "semantic": {key: g.as_dict() for key, g in result.semantic.items()},
        "steps": {str(key): g.as_dict() for key, g in sorted(result.steps.items())},
        "words": {str(key): g.as_dict() for key, g in sorted(result.words.items())},
        "distribution": result.distribution, "missing": missing, "right_if_stripped": result.right_if_stripped,
    }
    summary = (f"GQA testdev-balanced: accuracy {cell(overall.percent, 2)}% of {overall.questions} (binary "
               + ", open ".join(cell(g.percent, 2) + ("" if g.percent is None else "%")
                                for g in (result.overall["binary"], result.overall["open"]))
               + ")" + (f"; {len(missing)} unanswered counted wrong" if missing else ""))

    def write_predictions(path: Path) -> None:
        path.write_text(json.dumps(prediction_rows(in_file_order), ensure_ascii=False), encoding="utf-8")

    return Report("gqa", "GQA (testdev-balanced)", payload, markdown,
                  lambda out: bar_chart(rows, column, out, "GQA testdev-balanced", "accuracy (%)"), summary,
                  files=((PREDICTIONS_FILE, write_predictions),))


TASK = Task("gqa", "GQA testdev-balanced accuracy (GQA's eval.py rules) and its predictions file", 128, _report,
            QuestionFiles("LLaVA's llava_gqa_testdev_balanced.jsonl", "GQA's images folder", scored="optional",
                          score_help="LLaVA's llava_gqa_testdev_balanced.jsonl: answers must be to its questions "
                                     "(default: to questions of --annotations); every balanced question is scored, "
                                     "as eval.py does"),
            _arguments, column=TableColumn("GQA", lambda payload: payload["accuracy"]["all"]))
