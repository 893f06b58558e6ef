"""ScienceQA, `llava-lf eval scienceqa {predict,score}`: this package's command ties its parts together, so no part
imports another back: the published rules (`scienceqa`), LLaVA-1.5's question file (`scienceqa_cqma`) and the
optional judge (`scienceqa_judge`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.judge import add_judge_arguments, judge_client, write_reviews
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import answers_for
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, notes
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

from .scienceqa import GROUP_NAMES, Problem, ScienceQAResult, load_problems, prediction_requests, score
from .scienceqa_cqma import cqma_requests, load_cqma


def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="instead: folder holding ScienceQA's problems.json and pid_splits.json, asked in "
                             "LLaVA v1's format")
    parser.add_argument("--split", default="test", help="with --data: which split (with --questions: a label)")
    if phase == "predict":
        parser.add_argument("--images", type=Path, default=None,
                            help="with --data: folder holding {split}/{pid}/image.png (default: DATA/images)")
        parser.add_argument("--no-letter-instruction", action="store_true",
                            help="leave out LLaVA-1.5's 'Answer with the option's letter ...' line")
    else:  # optional: a text-only judge decides where it and the model disagree (the paper's 92.53)
        add_judge_arguments(parser, required=False)


def _problems(args: argparse.Namespace) -> list[Problem]:
    if (args.questions is None) == (args.data is None):
        raise LlavaLfError("pass either --questions llava_test_CQM-A.json (LLaVA-1.5's prompts) or --data "
                                 "DIR holding problems.json and pid_splits.json (LLaVA v1's format), not both")
    if args.questions is not None:
        return load_cqma(args.questions)
    return load_problems(args.data, args.split)


def _requests(args: argparse.Namespace) -> list[PredictionRequest]:
    problems = _problems(args)
    if args.questions is not None:
        return cqma_requests(problems, args.image_folder, not args.no_letter_instruction)
    return prediction_requests(problems, args.images or args.data / "images", args.split,
                               not args.no_letter_instruction)


def _groups(result: ScienceQAResult) -> dict[str, dict]:
    return {key: {"group": key, "questions": group.questions, "correct": group.correct}
            for key, group in result.groups.items()}


def _judged(args: argparse.Namespace, problems: list, answers: dict[str, str]) -> tuple[dict, Row, str, str]:
    """The judged figures: (payload, table row, Markdown paragraph, summary clause)."""
    from .scienceqa_judge import judge_all, judged_answers

    if not args.judge_model:
        raise LlavaLfError("--judge-base-url needs --judge-model (it is recorded: the figure depends on it)")
    client = judge_client(args)
    judged = judge_all(client, problems, answers, args.judge_workers)
    write_reviews(args.out_dir / f"scienceqa_{args.split}_judge_reviews.jsonl", judged)
    final = score(problems, judged_answers(answers, judged), args.split)
    sources = {name: sum(item.source == name for item in judged) for name in ("agreed", "judge", "ours")}
    served = sorted({item.served_model for item in judged if item.served_model})
    overall = final.groups["all"]
    payload = {"model": args.judge_model, "served_models": served, "sources": sources,
               "groups": _groups(final), "accuracy": {key: group.percent for key, group in final.groups.items()},
               "judge_stats": client.stats.as_dict()}
    text = (f"With judge `{args.judge_model}`: {sources['agreed']} answers agreed with its own; of the "
            f"{sources['judge'] + sources['ours']} that differed, its decision counted for {sources['judge']} and "
            f"{sources['ours']} kept ours (no readable \"The answer is X.\"). "
            f"Overall {cell(overall.percent, 2)}%" + (f", with image {cell(final.groups['IMG'].percent, 2)}%"
                                                  if "IMG" in final.groups else "") + ".")
    row = Row("judged", f"overall, with judge {args.judge_model}", overall.questions, overall.percent)
    return payload, row, text, f"; with judge {cell(overall.percent, 2)}%"


def _report(args: argparse.Namespace) -> Report:
    problems = _problems(args)
    source = (f"LLaVA-1.5's `{args.questions.name}` (its prompts as they are; no subject or grade in it)"
              if args.questions is not None else "ScienceQA's problems.json, asked in LLaVA v1's format")
    answers, missing = answers_for([p.pid for p in problems], args.predictions, args.allow_partial)
    result = score(problems, answers, args.split, missing)
    rows = [Row(key, f"{GROUP_NAMES.get(key, key)} ({key})" if key != "all" else "overall",
                group.questions, group.percent) for key, group in result.groups.items()]
    payload = asdict(result) | {"groups": _groups(result),
                                "accuracy": {key: group.percent for key, group in result.groups.items()},
                                "questions_file": (args.questions or args.data / "problems.json").name}
    judged_text = judged_summary = ""
    if args.judge_base_url:
        payload["judge"], row, judged_text, judged_summary = _judged(args, problems, answers)
        rows.insert(1, row)
    rules = ", ".join(f"{name}: {count}" for name, count in result.rules.items())
    markdown = "\n\n".join(filter(None, [
        f"ScienceQA `{args.split}` split, accuracy in percent. Questions: {source}.",
        comparison_table(rows, published.SCIENCEQA, digits=2),
        notes(published.SCIENCEQA), judged_text,
        f"Answers read by rule: {rules}.",
        f"Failed to parse ({len(result.failed_to_parse)}, counted wrong): {listing(result.failed_to_parse)}"
        if result.failed_to_parse else "",
        f"Letter past the last option ({len(result.out_of_range)}, counted wrong): {listing(result.out_of_range)}"
        if result.out_of_range else "",
        f"Not answered ({len(missing)}, counted wrong as published): {listing(missing)}" if missing else "",
    ]))
    overall = result.groups["all"]
    image = result.groups.get("IMG")
    summary = (f"ScienceQA {args.split}: {cell(overall.percent, 2)}% of {overall.questions}"
               + (f"; with image {cell(image.percent, 2)}% of {image.questions}" if image else "") + judged_summary
               + f"; failed to parse {len(result.failed_to_parse)}, out of range {len(result.out_of_range)}")
    return Report("scienceqa", f"ScienceQA ({args.split})", payload, markdown,
                  lambda out: bar_chart(rows, published.SCIENCEQA, out, f"ScienceQA {args.split}", "accuracy (%)"),
                  summary)


TASK = Task("scienceqa", "ScienceQA accuracy (overall, with image, by subject, context, grade)", 1024, _report,
            QuestionFiles("LLaVA-1.5's llava_test_CQM-A.json, asked as it is (the paper's SQA-IMG)",
                          "with --questions: the folder its `image` paths start from (scienceqa/images/test)",
                          required=False, images_required=False),
            _arguments, _requests, column=TableColumn("SQA-IMG", lambda payload: payload["accuracy"].get("IMG"), digits=1))
