"""MM-Vet: LLaVA's question file asked as it is, the answers graded by MM-Vet's GPT grader (re-implemented in
`mm_vet_grader`), scored per capability as its evaluator does, and converted to the grader's result file."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.judge import add_judge_arguments, judge_client, write_reviews
from llava_lf.evaluation.prediction_file import AnswerFile, answered, read_answers
from llava_lf.evaluation.questions import read_json
from llava_lf.evaluation.report import Report, Row, bar_chart, comparison_table, listing, markdown_table
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

from .mm_vet_grader import GRADER_MAX_TOKENS, Grade, GradeRequest, grade_runs

ID_PREFIX = "v1_"  # mm-vet.json's ids are v1_<the question file's question_id>
CAPABILITY_NAMES = {"rec": "recognition", "ocr": "OCR", "know": "knowledge", "gen": "language generation",
                    "spat": "spatial awareness", "math": "math"}
DECIMALS = 1  # the evaluator's --decimal_places default


@dataclass(frozen=True)
class MmVetItem:
    question_id: str  # v1_0
    question: str
    answer: str  # the ground truth, with <AND> / <OR>
    capabilities: tuple[str, ...]  # without repeats: the evaluator takes them as a set

    @property
    def answer_key(self) -> str:
        """The question file's id, as our answer files key it."""
        return self.question_id.removeprefix(ID_PREFIX)


def load_mm_vet(path: Path) -> list[MmVetItem]:
    """mm-vet.json (`{"v1_0": {"imagename", "capability", "question", "answer"}, ...}`), in file order."""
    data = read_json(path, "mm-vet.json from MM-Vet's mm-vet.zip as --data")
    if not isinstance(data, dict) or not data:
        raise LlavaLfError(f"{path} must be a JSON object of questions keyed v1_0, v1_1, ...; is it mm-vet.json?")
    items, problems = [], []
    for qid, record in data.items():
        if not qid.startswith(ID_PREFIX):
            problems.append(f"record {qid!r}: MM-Vet v1 ids start with {ID_PREFIX!r}")
            continue
        if not isinstance(record, dict):
            problems.append(f"record {qid!r}: must be an object with question, answer and capability")
            continue
        bad = [name for name in ("question", "answer") if not isinstance(record.get(name), str)]
        capabilities = record.get("capability")
        if not isinstance(capabilities, list) or not capabilities or not all(isinstance(c, str) for c in capabilities):
            bad.append("capability")
        if bad:
            problems.append(f"record {qid!r}: field(s) {', '.join(bad)} missing or of the wrong type (question and "
                            "answer are strings, capability a non-empty list of names)")
            continue
        items.append(MmVetItem(qid, record["question"], record["answer"], tuple(dict.fromkeys(capabilities))))
    if problems:
        raise LlavaLfError([f"{path}: {problem}" for problem in problems])
    return items


@dataclass(frozen=True)
class MmVetScores:
    """The evaluator's figures: each a mean over runs of (sum of scores / questions x 100), rounded."""
    runs: int
    total: float
    std: float  # of the per-run totals (population std), rounded
    capabilities: dict[str, float]  # most common capability first, as the evaluator's columns
    per_run: dict[str, list[float]]  # "total" and each capability, one rounded figure per run
    counts: dict[str, int]  # questions per capability
    combinations: dict[str, float]  # per capability combination (names sorted, joined by "_")
    combination_counts: dict[str, int]


def _round(value) -> float:
    import numpy as np

    return float(np.round(value, DECIMALS))  # numpy's rounding, as the evaluator's (not Python's on floats)


def score_runs(items: list[MmVetItem], scores: list[dict[str, float]]) -> MmVetScores:
    """`scores[run][question_id]`; a question absent from a run (not answered) scores 0 but still counts."""
    import numpy as np

    counts = Counter(c for item in items for c in item.capabilities)
    groups = {name: [item for item in items if name in item.capabilities] for name, _ in counts.most_common()}
    combos: dict[str, list[MmVetItem]] = {}
    for item in items:
        combos.setdefault("_".join(sorted(item.capabilities)), []).append(item)

    def percent(members: list[MmVetItem], run: dict[str, float]) -> float:
        total = 0.0
        for item in members:  # summed in file order, as the evaluator adds them
            total += run.get(item.question_id, 0.0)
        return total / len(members) * 100

    per_run = {name: np.array([percent(members, run) for run in scores])
               for name, members in ({"total": items} | groups).items()}
    combo_runs = {name: np.array([percent(members, run) for run in scores]) for name, members in combos.items()}
    ordered = sorted(combo_runs, key=lambda name: -len(combos[name]))
    return MmVetScores(
        len(scores), _round(per_run["total"].mean()), _round(per_run["total"].std()),
        {name: _round(per_run[name].mean()) for name in groups},
        {name: [_round(value) for value in values] for name, values in per_run.items()},
        dict(counts.most_common()),
        {name: _round(combo_runs[name].mean()) for name in ordered}, {name: len(combos[name]) for name in ordered})


def results_file(answers: AnswerFile, keys: set[str]) -> str:
    """What LLaVA's convert_mmvet_for_eval.py writes from the answer file: {"v1_<question_id>": text}, in the
    file's order, as indented ASCII JSON."""
    return json.dumps({f"{ID_PREFIX}{record.question_id}": record.text for key, record in answers.records.items()
                       if key in keys}, indent=2)


def grade_file(grades: list[list[Grade]]) -> dict:
    """The evaluator's own grade file ({id: {"model", "content", "score"} with one entry per run}): with it
    in its results folder under its expected name, MM-Vet's script only recomputes the tables."""
    table: dict[str, dict[str, list]] = {}
    for run in grades:
        for grade in run:
            entry = table.setdefault(grade.question_id, {"model": [], "content": [], "score": []})
            entry["model"].append(grade.served_model)
            entry["content"].append(grade.content)
            entry["score"].append(grade.score)
    return table


# The command: `llava-lf eval mm-vet {predict,score}` -------------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    if phase == "predict":
        return
    parser.add_argument("--data", type=Path, required=True,
                        help="MM-Vet's mm-vet.json (questions, ground truths with <AND>/<OR>, capabilities)")
    add_judge_arguments(parser, required=True)
    parser.add_argument("--judge-runs", type=int, default=1,
                        help="grade every answer N times and report the mean (LLaVA-1.5 7B's figure: 3 runs)")
    # The grader's settings: the first request at temperature 0, three tokens.
    parser.set_defaults(judge_temperature=0.0, judge_max_tokens=GRADER_MAX_TOKENS)


def _markdown(args: argparse.Namespace, result: MmVetScores, served: list[str], given_up: list[str],
              missing: list[str], rows: list[Row]) -> str:
    runs = [f"run {index + 1}" for index in range(result.runs)]
    detail = markdown_table(["", "n", *runs, "mean"],
                            [[row.label, str(row.questions), *(f"{value:.1f}" for value in result.per_run[row.key]),
                              f"{row.value:.1f}"] for row in rows])
    return "\n\n".join(filter(None, [
        f"MM-Vet, score in percent (mean correctness x 100); grader `{args.judge_model}`"
        + (f" (served as {', '.join(served)})" if served else "")
        + f", {result.runs} run(s)" + (f", std of the totals {result.std:.1f}" if result.runs > 1 else "") + ".",
        comparison_table(rows[:1], published.column("MM-Vet", "total")), detail,
        "MM-Vet's own grader reads `mm_vet_results.json` (LLaVA's conversion of the answer file); "
        "`mm_vet_grade.json` holds our grades in its grade-file layout.",
        f"Five unreadable grader replies, scored 0.0 as the grader does ({len(given_up)}): {listing(given_up)}"
        if given_up else "",
        f"Not answered ({len(missing)}, scored 0.0; MM-Vet's grader stops on a result file that lacks them): "
        f"{listing(missing)}" if missing else "",
    ]))


def _report(args: argparse.Namespace) -> Report:
    if args.judge_runs < 1:
        raise LlavaLfError(f"--judge-runs {args.judge_runs}: grade at least once (1, or 3 as LLaVA-1.5 7B's figure)")
    items = load_mm_vet(args.data)
    hint = f"; an answer's question_id is the number in {args.data.name}'s {ID_PREFIX}<n> ids"
    answers = read_answers(args.predictions)
    records, missing_keys = answered([item.answer_key for item in items], answers, args.allow_partial, hint)
    judge = judge_client(args)  # temperature and max tokens default to the grader's 0 and 3 (set_defaults)
    requests = [GradeRequest(item.question_id, item.question, item.answer, records[item.answer_key].text)
                for item in items if item.answer_key in records]
    grades = grade_runs(judge, requests, args.judge_runs, args.judge_workers)
    result = score_runs(items, [{grade.question_id: grade.score for grade in run} for run in grades])
    missing = [f"{ID_PREFIX}{key}" for key in missing_keys]
    given_up = [f"{grade.question_id} (run {grade.run + 1})" for run in grades for grade in run if not grade.read]
    served = sorted({grade.served_model for run in grades for grade in run if grade.served_model})
    rows = [Row(name, f"{CAPABILITY_NAMES.get(name, name)} ({name})" if name != "total" else "total",
                len(items) if name == "total" else result.counts[name], value)
            for name, value in [("total", result.total), *result.capabilities.items()]]
    payload = {"total": result.total, "std": result.std, "runs": result.runs,
               "capabilities": result.capabilities, "per_run": result.per_run, "counts": result.counts,
               "capability_combinations": result.combinations, "combination_counts": result.combination_counts,
               "judge_model": args.judge_model, "served_models": served, "questions": len(items),
               "given_up": given_up, "missing": missing, "judge_stats": judge.stats.as_dict()}
    results_text = results_file(answers, set(records))
    summary = (f"MM-Vet: total {result.total:.1f}"
               + (f" (mean of {result.runs} runs, std {result.std:.1f})" if result.runs > 1 else "") + "; "
               + ", ".join(f"{name} {value:.1f}" for name, value in result.capabilities.items())
               + f"; grader {args.judge_model}: {judge.stats.requests} requests, {judge.stats.cache_hits} cache hits"
               + (f"; {len(given_up)} given up" if given_up else "") + (f"; {len(missing)} not answered" if missing else ""))
    return Report(
        "mm_vet", "MM-Vet", payload, _markdown(args, result, served, given_up, missing, rows),
        lambda out: bar_chart(rows, published.column("MM-Vet", "total"), out,
                              f"MM-Vet (grader {args.judge_model}, {result.runs} run(s))", "score (%)"),
        summary,
        files=(("mm_vet_results.json", lambda path: path.write_text(results_text, encoding="utf-8")),
               ("mm_vet_grade.json", lambda path: path.write_text(json.dumps(grade_file(grades), indent=4),
                                                                  encoding="utf-8")),
               ("mm_vet_reviews.jsonl", lambda path: write_reviews(path, [g for run in grades for g in run]))))


TASK = Task("mm-vet", "MM-Vet total and per-capability scores through MM-Vet's GPT grader", 1024, _report,
            QuestionFiles("LLaVA's llava-mm-vet.jsonl", "mm-vet/images (v1_0.png, ...)", scored="no"), _arguments,
            column=TableColumn("MM-Vet", lambda payload: payload["total"]))
