"""The four `llava-lf eval` benchmarks: each names its arguments, builds its prediction requests, and turns
a predictions file into a report (JSON payload, Markdown table, chart)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

from . import published
from .benchmarks import llava_bench, pope, scienceqa
from .predict import PredictionRequest
from .prediction_file import answers_for
from .report import Report, Row, bar_chart, comparison_table, grouped_bar_chart, markdown_table, notes


@dataclass(frozen=True)
class Task:
    name: str
    help: str
    max_new_tokens: int  # default generation budget for this benchmark's answers
    add_arguments: Callable[[argparse.ArgumentParser, str], None]  # (parser, phase)
    requests: Callable[[argparse.Namespace], list[PredictionRequest]]
    report: Callable[[argparse.Namespace], Report]


def _listing(ids: list[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more; all in the JSON)" if len(ids) > limit else "")


# The judge (LLaVA-Bench, and ScienceQA's judged figure) -------------------------------------------

def _judge_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    judge = parser.add_argument_group("judge (any OpenAI-compatible endpoint)")
    judge.add_argument("--judge-base-url", required=required,
                       help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    judge.add_argument("--judge-model", required=required, help="recorded in the results: scores depend on it")
    judge.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="name of the variable holding the key")
    judge.add_argument("--judge-timeout", type=float, default=120.0)
    judge.add_argument("--judge-attempts", type=int, default=6)
    judge.add_argument("--judge-backoff", type=float, default=2.0, help="first wait between attempts, doubling")
    judge.add_argument("--judge-max-tokens", type=int, default=1024)
    judge.add_argument("--judge-temperature", type=float, default=0.2)
    judge.add_argument("--judge-workers", type=int, default=4)
    judge.add_argument("--judge-cache", type=Path, default=None, help="reply cache (default: OUT_DIR/judge_cache)")


def _judge_client(args: argparse.Namespace):
    from .judge import JudgeClient, JudgeConfig

    return JudgeClient(JudgeConfig(
        base_url=args.judge_base_url, model=args.judge_model, api_key_env=args.judge_key_env or None,
        timeout=args.judge_timeout, max_attempts=args.judge_attempts, backoff=args.judge_backoff,
        temperature=args.judge_temperature, max_tokens=args.judge_max_tokens,
        cache_dir=args.judge_cache or args.out_dir / "judge_cache"))


def _write_reviews(path: Path, items: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(item), ensure_ascii=False) + "\n" for item in items), encoding="utf-8")


# ScienceQA ------------------------------------------------------------------------------------------

def _sqa_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--data", type=Path, required=True, help="folder holding problems.json and pid_splits.json")
    parser.add_argument("--split", default="test")
    if phase == "predict":
        parser.add_argument("--images", type=Path, default=None,
                            help="folder holding {split}/{pid}/image.png (default: DATA/images)")
        parser.add_argument("--no-letter-instruction", action="store_true",
                            help="leave out LLaVA-1.5's 'Answer with the option's letter ...' line")
    else:  # optional: a text-only judge decides where it and the model disagree (the paper's 92.53)
        _judge_arguments(parser, required=False)


def _sqa_requests(args: argparse.Namespace) -> list[PredictionRequest]:
    problems = scienceqa.load_problems(args.data, args.split)
    return scienceqa.prediction_requests(problems, args.images or args.data / "images", args.split,
                                         not args.no_letter_instruction)


def _sqa_judged(args: argparse.Namespace, problems: list, answers: dict[str, str]) -> tuple[dict, Row, str, str]:
    """The judged figures: (payload, table row, Markdown paragraph, summary clause)."""
    from .benchmarks import scienceqa_judge

    if not args.judge_model:
        raise LlavaLfError("--judge-base-url needs --judge-model (it is recorded: the figure depends on it)")
    client = _judge_client(args)
    judged = scienceqa_judge.judge_all(client, problems, answers, args.judge_workers)
    _write_reviews(args.out_dir / f"scienceqa_{args.split}_judge_reviews.jsonl", judged)
    final = scienceqa.score(problems, scienceqa_judge.judged_answers(answers, judged), args.split)
    sources = {name: sum(item.source == name for item in judged) for name in ("agreed", "judge", "ours")}
    served = sorted({item.served_model for item in judged if item.served_model})
    overall = final.groups["all"]
    payload = {"model": args.judge_model, "served_models": served, "sources": sources,
               "groups": {key: asdict(group) for key, group in final.groups.items()},
               "accuracy": {key: group.accuracy for key, group in final.groups.items()},
               "judge_stats": client.stats.as_dict()}
    text = (f"With judge `{args.judge_model}`: {sources['agreed']} answers agreed with its own; of the "
            f"{sources['judge'] + sources['ours']} that differed, its decision counted for {sources['judge']} and "
            f"{sources['ours']} kept ours (no readable \"The answer is X.\"). "
            f"Overall {overall.accuracy:.2f}%" + (f", with image {final.groups['IMG'].accuracy:.2f}%"
                                                  if "IMG" in final.groups else "") + ".")
    row = Row("judged", f"overall, with judge {args.judge_model}", overall.questions, overall.accuracy)
    return payload, row, text, f"; with judge {overall.accuracy:.2f}%"


def _sqa_report(args: argparse.Namespace) -> Report:
    problems = scienceqa.load_problems(args.data, args.split)
    answers, missing = answers_for([p.pid for p in problems], args.predictions, args.allow_partial)
    result = scienceqa.score(problems, answers, args.split, missing)
    rows = [Row(key, f"{scienceqa.GROUP_NAMES.get(key, key)} ({key})" if key != "all" else "overall",
                group.questions, group.accuracy) for key, group in result.groups.items()]
    payload = asdict(result) | {"accuracy": {key: group.accuracy for key, group in result.groups.items()}}
    judged_text = judged_summary = ""
    if args.judge_base_url:
        payload["judge"], row, judged_text, judged_summary = _sqa_judged(args, problems, answers)
        rows.insert(1, row)
    rules = ", ".join(f"{name}: {count}" for name, count in result.rules.items())
    markdown = "\n\n".join(filter(None, [
        f"ScienceQA `{args.split}` split, accuracy in percent.",
        comparison_table(rows, published.SCIENCEQA, digits=2),
        notes(published.SCIENCEQA), judged_text,
        f"Answers read by rule: {rules}.",
        f"Failed to parse ({len(result.failed_to_parse)}, counted wrong): {_listing(result.failed_to_parse)}"
        if result.failed_to_parse else "",
        f"Letter past the last option ({len(result.out_of_range)}, counted wrong): {_listing(result.out_of_range)}"
        if result.out_of_range else "",
        f"Not answered ({len(missing)}, counted wrong as published): {_listing(missing)}" if missing else "",
    ]))
    overall = result.groups["all"]
    image = result.groups.get("IMG")
    summary = (f"ScienceQA {args.split}: {overall.accuracy:.2f}% of {overall.questions}"
               + (f"; with image {image.accuracy:.2f}% of {image.questions}" if image else "") + judged_summary
               + f"; failed to parse {len(result.failed_to_parse)}, out of range {len(result.out_of_range)}")
    return Report("scienceqa", f"ScienceQA ({args.split})", payload, markdown,
                  lambda out: bar_chart(rows, published.SCIENCEQA, out, f"ScienceQA {args.split}", "accuracy (%)"),
                  summary)


# LLaVA-Bench ---------------------------------------------------------------------------------------

def _bench_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--questions", type=Path, required=True, help="questions JSONL (question_id, image, text, category)")
    parser.add_argument("--variant", choices=sorted(published.LLAVA_BENCH), default="wild",
                        help="which published numbers to compare with (In-the-Wild or COCO)")
    if phase == "predict":
        parser.add_argument("--image-folder", type=Path, required=True)
        return
    parser.add_argument("--contexts", type=Path, required=True, help="image descriptions JSONL (context.jsonl / caps_boxes)")
    parser.add_argument("--answers", type=Path, required=True, help="reference answers JSONL (answers_gpt4.jsonl)")
    _judge_arguments(parser, required=True)
    parser.add_argument("--judge-prompt", type=Path, default=None,
                        help="file with the judge instruction ({boxes} marks where the box note goes)")
    parser.add_argument("--reasks", type=int, default=1, help="times an unreadable reply is asked again")


def _bench_requests(args: argparse.Namespace) -> list[PredictionRequest]:
    return llava_bench.prediction_requests(args.questions, args.image_folder)


def _bench_report(args: argparse.Namespace) -> Report:
    items = llava_bench.load_bench(args.questions, args.contexts, args.answers)
    answers, missing = answers_for([item.question_id for item in items], args.predictions, args.allow_partial)
    client = _judge_client(args)
    instruction = args.judge_prompt.read_text(encoding="utf-8") if args.judge_prompt else llava_bench.INSTRUCTION
    judgements = llava_bench.judge_all(client, items, answers, args.reasks, args.judge_workers, instruction)
    categories = llava_bench.summarise(judgements)
    unparsable = [j.question_id for j in judgements if j.scores is None]
    result = llava_bench.LlavaBenchResult(args.variant, args.judge_model,
                                          sorted({j.served_model for j in judgements if j.served_model}),
                                          categories, unparsable, missing, client.stats.as_dict())
    _write_reviews(args.out_dir / f"llava_bench_{args.variant}_reviews.jsonl", judgements)

    reference = published.LLAVA_BENCH[args.variant]
    rows = [Row(key, llava_bench.CATEGORY_NAMES[key], score.questions, score.relative) for key, score in categories.items()]
    detail = markdown_table(
        ["", "scored", "unparsable", "reference mean", "candidate mean", "relative (%)"],
        [[llava_bench.CATEGORY_NAMES[k], str(s.scored), str(s.unparsable),
          "–" if s.reference_mean is None else f"{s.reference_mean:.2f}",
          "–" if s.candidate_mean is None else f"{s.candidate_mean:.2f}",
          "–" if s.relative is None else f"{s.relative:.1f}"] for k, s in categories.items()])
    markdown = "\n\n".join(filter(None, [
        f"LLaVA-Bench ({args.variant}), relative score in percent; judge: `{args.judge_model}`"
        + (f" (served as {', '.join(result.judge_served_models)})" if result.judge_served_models else "") + ".",
        comparison_table(rows, reference), notes(reference), detail,
        f"Judge never gave readable scores ({len(unparsable)}, left out of the means): {_listing(unparsable)}"
        if unparsable else "",
        f"Not answered ({len(missing)}): {_listing(missing)}" if missing else "",
    ]))
    overall = categories.get("all")
    summary = (f"LLaVA-Bench {args.variant}: relative score "
               f"{'n/a' if overall is None or overall.relative is None else f'{overall.relative:.1f}%'} "
               f"({0 if overall is None else overall.scored} scored, {len(unparsable)} unparsable) "
               f"by judge {args.judge_model}; judge requests {client.stats.requests}, cache hits {client.stats.cache_hits}")
    return Report(f"llava_bench_{args.variant}", f"LLaVA-Bench ({args.variant})", asdict(result), markdown,
                  lambda out: bar_chart(rows, reference, out, f"LLaVA-Bench {args.variant} (judge {args.judge_model})",
                                        "relative score (%)", ymax=max([100.0] + [r.value or 0 for r in rows])),
                  summary)


# POPE ----------------------------------------------------------------------------------------------

def _pope_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--annotations", type=Path, default=None, help="folder of coco_pope_{split}.json files")
    parser.add_argument("--questions", type=Path, default=None,
                        help="LLaVA-1.5's llava_pope_test.jsonl (all splits, a category each, unique ids); "
                             "labels come from --annotations unless its lines carry them")
    if phase == "predict":
        parser.add_argument("--image-folder", type=Path, required=True, help="COCO val2014 images")
        parser.add_argument("--no-instruction", action="store_true",
                            help="leave out LLaVA-1.5's 'Answer the question using a single word or phrase.'")


def _pope_requests(args: argparse.Namespace) -> list[PredictionRequest]:
    return pope.prediction_requests(pope.load_pope(args.annotations, args.questions, labels=False), args.image_folder,
                                    not args.no_instruction)


def _pope_report(args: argparse.Namespace) -> Report:
    questions = pope.load_pope(args.annotations, args.questions)
    hint = "" if args.questions else "; an answer file made from LLaVA-1.5's llava_pope_test.jsonl needs --questions"
    answers, missing = answers_for([q.key for q in questions], args.predictions, args.allow_partial, hint)
    result = pope.score(questions, answers, missing)
    splits = list(result.splits.values())
    table = markdown_table(
        ["split", "n", "accuracy", "precision", "recall", "F1", "yes-ratio", "unclear"],
        [[m.split, str(m.questions)] + [f"{100 * v:.1f}" for v in (m.accuracy, m.precision, m.recall, m.f1, m.yes_ratio)]
         + [str(m.unclear)] for m in splits])
    rows = [Row("mean F1", "mean F1 over splits", sum(m.questions for m in splits), 100 * result.mean_f1)]
    markdown = "\n\n".join(filter(None, [
        "POPE, in percent.", table, comparison_table(rows, published.POPE),
        "LLaVA-1.5 reports one POPE figure over the three COCO splits; it is set beside our mean F1.",
        f"Answers naming neither yes nor no ({len(result.unclear)}, read as yes as published): "
        f"{_listing(result.unclear)}" if result.unclear else "",
        f"Not answered ({len(missing)}): {_listing(missing)}" if missing else "",
    ]))
    payload = {"splits": {m.split: m.as_dict() for m in splits}, "mean_f1": result.mean_f1,
               "unclear": result.unclear, "missing": missing}
    summary = "POPE: " + "; ".join(f"{m.split} acc {100 * m.accuracy:.1f} F1 {100 * m.f1:.1f} yes {100 * m.yes_ratio:.1f}"
                                   for m in splits) + f"; mean F1 {100 * result.mean_f1:.1f}"
    series = {name: [100 * getattr(m, attr) for m in splits] for name, attr in
              (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
               ("yes-ratio", "yes_ratio"))}
    return Report("pope", "POPE", payload, markdown,
                  lambda out: grouped_bar_chart([m.split for m in splits], series, out, "POPE", "percent",
                                                lines={f"{p.model}: POPE {p.value:g} (published)": p.value
                                                       for p in published.POPE["mean F1"]}),
                  summary)


# The demo's held-out questions ---------------------------------------------------------------------

def _demo_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--questions", type=Path, required=True, help="the demo's shapes_test_questions.jsonl")
    if phase == "predict":
        parser.add_argument("--image-folder", type=Path, required=True, help="the demo's data/images")


def _demo_requests(args: argparse.Namespace) -> list[PredictionRequest]:
    from .benchmarks.shapes import demo_requests, load_questions

    return demo_requests(load_questions(args.questions), args.image_folder)


def _demo_report(args: argparse.Namespace) -> Report:
    from .benchmarks.shapes import score_demo

    scores, missing = score_demo(args.questions, args.predictions, args.allow_partial)
    rows = [Row(key, key, s.questions, 100 * s.accuracy) for key, s in scores.items()]
    table = markdown_table(["question type", "n", "chance", "accuracy"],
                           [[k, str(s.questions), f"{100 * s.chance:.1f}", f"{100 * s.accuracy:.1f}"]
                            for k, s in scores.items()])
    markdown = "Demo held-out questions, exact answer match in percent.\n\n" + table
    if missing:
        markdown += f"\n\nNot answered ({len(missing)}): {_listing(missing)}"
    chance = {key: 100 * s.chance for key, s in scores.items()}
    payload = {"scores": {k: asdict(s) | {"accuracy": s.accuracy} for k, s in scores.items()}, "missing": missing}
    summary = "demo: " + ", ".join(f"{k} {100 * s.accuracy:.1f}% (chance {100 * s.chance:.1f})" for k, s in scores.items())
    return Report("demo", "Demo held-out questions", payload, markdown,
                  lambda out: bar_chart(rows, {}, out, "demo held-out accuracy", "accuracy (%)", baseline=chance),
                  summary)


TASKS: dict[str, Task] = {
    "scienceqa": Task("scienceqa", "ScienceQA accuracy (overall, with image, by subject, context, grade)", 128,
                      _sqa_arguments, _sqa_requests, _sqa_report),
    "llava-bench": Task("llava-bench", "LLaVA-Bench relative score through a judge model", 1024,
                        _bench_arguments, _bench_requests, _bench_report),
    "pope": Task("pope", "POPE accuracy, precision, recall, F1 and yes-ratio per split", 16,
                 _pope_arguments, _pope_requests, _pope_report),
    "demo": Task("demo", "the demo's held-out shape questions", 8, _demo_arguments, _demo_requests, _demo_report),
}
