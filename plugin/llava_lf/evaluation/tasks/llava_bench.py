"""LLaVA-Bench (COCO and In-the-Wild): a judge model compares each answer with a reference answer.

The judge reads a text description of the image, the question, the reference answer first and the
candidate second, and puts two 1-10 scores on its first line. The relative score of a category is
mean(candidate) / mean(reference) x 100. Replies without two readable scores are asked again (with
the format restated) and, if still unreadable, counted and listed; they never enter the means.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llava_lf.common.jsonl import read_json_rows
from llava_lf.errors import LlavaLfError
from llava_lf.evaluation import published
from llava_lf.evaluation.judge import JudgeClient, add_judge_arguments, ask_all, judge_client, write_reviews
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.prediction_file import answers_for
from llava_lf.evaluation.questions import require_images
from llava_lf.evaluation.report import Report, Row, bar_chart, cell, comparison_table, listing, markdown_table, notes
from llava_lf.evaluation.tasks import QuestionFiles, TableColumn, Task

CATEGORIES = ("conv", "detail", "complex")
CATEGORY_NAMES = {"conv": "conversation", "detail": "detail description", "complex": "complex reasoning",
                  "all": "overall"}

SYSTEM_PROMPT = "You are a careful, fair assistant who judges how good answers are."
INSTRUCTION = (
    "Two AI assistants answered the user's question above about an image. You cannot see the image: the "
    "context describes it{boxes}. Judge each answer for helpfulness, relevance, accuracy and level of detail, "
    "and give each an overall score from 1 to 10, where higher is better.\n"
    "Write the two scores on the first line and nothing else: Assistant 1's score, a space, Assistant 2's "
    "score.\n"
    "From the second line on, explain your judgement. Be impartial, and do not let the order in which the "
    "answers are shown affect it."
)
BOXES_NOTE = ", and lists its objects with bounding boxes (x1, y1, x2, y2) as fractions of the image size"
REASK = ("I could not read two scores on the first line of your reply. Reply again: the first line must hold "
         "only two numbers from 1 to 10, Assistant 1's then Assistant 2's, separated by a space, e.g. `7 8`.")


@dataclass(frozen=True)
class BenchQuestion:
    question_id: str
    image: str
    text: str
    category: str
    context: str  # the image described in words (captions, then object boxes when the file has them)
    has_boxes: bool
    reference: str  # the reference model's answer (text-only GPT-4 in the published runs)


def _read_jsonl(path: Path) -> list[dict]:
    return read_json_rows(path, LlavaLfError)


def _field(row: dict, name: str, path: Path):
    if name not in row:
        raise LlavaLfError(f"{path}: record {row.get('question_id', row.get('image', '?'))!r} has no "
                                  f"'{name}' field; LLaVA-Bench files carry it (see docs/eval.md)")
    return row[name]


def _describe(context: dict, path: Path) -> tuple[str, bool]:
    captions = context.get("caption", context.get("captions"))
    if captions is None:
        raise LlavaLfError(f"{path}: context for image {context.get('image')!r} has neither 'caption' "
                                  "(In-the-Wild) nor 'captions' (COCO)")
    text = captions if isinstance(captions, str) else "\n".join(captions)
    instances = context.get("instances") or []
    if instances:
        text += "\n\n" + "\n".join(f"{item['category']}: {item['bbox']}" for item in instances)
    return text, bool(instances)


def load_bench(questions: Path, contexts: Path, references: Path) -> list[BenchQuestion]:
    """Join the three files by image and question id; every question needs a context and a reference."""
    by_image = {}
    for row in _read_jsonl(contexts):
        by_image[_field(row, "image", contexts)] = _describe(row, contexts)
    reference_text = {str(_field(row, "question_id", references)): _field(row, "text", references)
                      for row in _read_jsonl(references)}
    items, problems = [], []
    for row in _read_jsonl(questions):
        qid, image = str(_field(row, "question_id", questions)), _field(row, "image", questions)
        category = _field(row, "category", questions)
        found = []
        if category not in CATEGORIES:
            found.append(f"question {qid}: category {category!r} is not one of {', '.join(CATEGORIES)}")
        if image not in by_image:
            found.append(f"question {qid}: image {image!r} has no record in {contexts.name}")
        if qid not in reference_text:
            found.append(f"question {qid}: no reference answer in {references.name}")
        problems += found
        if not found:
            context, boxes = by_image[image]
            items.append(BenchQuestion(qid, image, _field(row, "text", questions), category, context, boxes,
                                       reference_text[qid]))
    if problems:
        raise LlavaLfError(f"{len(problems)} problem(s) joining LLaVA-Bench files:\n  " + "\n  ".join(problems))
    return items


def prediction_requests(questions: Path, image_folder: Path) -> list[PredictionRequest]:
    """What the model is asked: each question as written, with its image (LLaVA-1.5 adds no instruction)."""
    return require_images([PredictionRequest(str(_field(row, "question_id", questions)), _field(row, "text", questions),
                                             image_folder / _field(row, "image", questions))
                           for row in _read_jsonl(questions)],
                          "pass the folder that holds the benchmark's images as --image-folder")


def judge_messages(item: BenchQuestion, candidate: str, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    body = (f"[Context]\n{item.context}\n\n[Question]\n{item.text}\n\n"
            f"[Assistant 1]\n{item.reference}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{candidate}\n\n[End of Assistant 2]\n\n"
            f"[System]\n{instruction.replace('{boxes}', BOXES_NOTE if item.has_boxes else '')}\n\n")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


def parse_scores(reply: str) -> tuple[float, float] | None:
    """The two scores on the reply's first line (commas count as spaces), each within 1-10; else None."""
    stripped = reply.strip()
    first_line = stripped.splitlines()[0] if stripped else ""
    parts = first_line.replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        scores = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return scores if all(1.0 <= score <= 10.0 for score in scores) else None


@dataclass(frozen=True)
class Judgement:
    question_id: str
    category: str
    scores: tuple[float, float] | None  # (reference, candidate); None when the judge never gave readable scores
    replies: tuple[str, ...]
    served_model: str


def judge_one(client: JudgeClient, item: BenchQuestion, candidate: str, reasks: int = 1,
              instruction: str = INSTRUCTION) -> Judgement:
    messages = judge_messages(item, candidate, instruction)
    replies: list[str] = []
    served = ""
    for _ in range(reasks + 1):
        reply = client.complete(messages)
        replies.append(reply.text)
        served = reply.served_model
        scores = parse_scores(reply.text)
        if scores is not None:
            return Judgement(item.question_id, item.category, scores, tuple(replies), served)
        # Re-ask in the same conversation, so the new request (and its cache entry) differs from the first.
        messages = messages + [{"role": "assistant", "content": reply.text}, {"role": "user", "content": REASK}]
    return Judgement(item.question_id, item.category, None, tuple(replies), served)


@dataclass(frozen=True)
class CategoryScore:
    category: str
    questions: int
    scored: int
    unparsable: int
    reference_mean: float | None  # rounded to 3 decimals, as published
    candidate_mean: float | None
    relative: float | None  # percent, rounded to 1 decimal, as published


@dataclass
class LlavaBenchResult:
    variant: str
    judge_model: str
    judge_served_models: list[str]
    categories: dict[str, CategoryScore]
    unparsable: list[str]  # question ids the judge never scored readably
    missing: list[str]  # question ids without a prediction (only with --allow-partial)
    judge_stats: dict = field(default_factory=dict)


def summarise(judgements: Sequence[Judgement]) -> dict[str, CategoryScore]:
    groups: dict[str, list[Judgement]] = {category: [] for category in CATEGORIES}
    for judgement in judgements:
        groups[judgement.category].append(judgement)
    groups["all"] = list(judgements)
    result = {}
    for category, members in groups.items():
        if not members:
            continue
        pairs = [j.scores for j in members if j.scores is not None]
        # As `summarize_gpt_review.py`: each mean rounded to 3 decimals, then the ratio of the rounded
        # means rounded to 1 decimal.
        reference = round(sum(p[0] for p in pairs) / len(pairs), 3) if pairs else None
        candidate = round(sum(p[1] for p in pairs) / len(pairs), 3) if pairs else None
        relative = round(candidate / reference * 100, 1) if pairs and reference else None  # this order, as published
        result[category] = CategoryScore(category, len(members), len(pairs), len(members) - len(pairs),
                                         reference, candidate, relative)
    return result


def judge_all(client: JudgeClient, items: Sequence[BenchQuestion], answers: dict[str, str], reasks: int = 1,
              workers: int = 4, instruction: str = INSTRUCTION) -> list[Judgement]:
    """Judge every answered question (in a small thread pool: the judge is remote and slow)."""
    answered = [item for item in items if item.question_id in answers]
    return ask_all(lambda item: judge_one(client, item, answers[item.question_id], reasks, instruction), answered,
                   workers, "judge")


# The command: `llava-lf eval llava-bench {predict,score}` --------------------------------------------

def _arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    parser.add_argument("--variant", choices=sorted(published.LLAVA_BENCH), default="wild",
                        help="which published numbers to compare with (In-the-Wild or COCO)")
    if phase == "predict":
        return
    parser.add_argument("--contexts", type=Path, required=True, help="image descriptions JSONL (context.jsonl / caps_boxes)")
    parser.add_argument("--answers", type=Path, required=True, help="reference answers JSONL (answers_gpt4.jsonl)")
    add_judge_arguments(parser, required=True)
    parser.add_argument("--judge-prompt", type=Path, default=None,
                        help="file with the judge instruction ({boxes} marks where the box note goes)")
    parser.add_argument("--reasks", type=int, default=1, help="times an unreadable reply is asked again")


def _requests(args: argparse.Namespace) -> list[PredictionRequest]:
    return prediction_requests(args.questions, args.image_folder)


def _report(args: argparse.Namespace) -> Report:
    items = load_bench(args.questions, args.contexts, args.answers)
    answers, missing = answers_for([item.question_id for item in items], args.predictions, args.allow_partial)
    client = judge_client(args)
    instruction = args.judge_prompt.read_text(encoding="utf-8") if args.judge_prompt else INSTRUCTION
    judgements = judge_all(client, items, answers, args.reasks, args.judge_workers, instruction)
    categories = summarise(judgements)
    unparsable = [j.question_id for j in judgements if j.scores is None]
    result = LlavaBenchResult(args.variant, args.judge_model,
                                          sorted({j.served_model for j in judgements if j.served_model}),
                                          categories, unparsable, missing, client.stats.as_dict())
    write_reviews(args.out_dir / f"llava_bench_{args.variant}_reviews.jsonl", judgements)

    reference = published.LLAVA_BENCH[args.variant]
    rows = [Row(key, CATEGORY_NAMES[key], score.questions, score.relative) for key, score in categories.items()]
    detail = markdown_table(
        ["", "scored", "unparsable", "reference mean", "candidate mean", "relative (%)"],
        [[CATEGORY_NAMES[k], str(s.scored), str(s.unparsable), cell(s.reference_mean, 2), cell(s.candidate_mean, 2),
          cell(s.relative)] for k, s in categories.items()])
    markdown = "\n\n".join(filter(None, [
        f"LLaVA-Bench ({args.variant}), relative score in percent; judge: `{args.judge_model}`"
        + (f" (served as {', '.join(result.judge_served_models)})" if result.judge_served_models else "") + ".",
        comparison_table(rows, reference), notes(reference), detail,
        f"Judge never gave readable scores ({len(unparsable)}, left out of the means): {listing(unparsable)}"
        if unparsable else "",
        f"Not answered ({len(missing)}): {listing(missing)}" if missing else "",
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


def _headline(payload: dict) -> float | None:
    overall = payload["categories"].get("all")
    return None if overall is None else overall["relative"]


TASK = Task("llava-bench", "LLaVA-Bench relative score through a judge model", 1024, _report,
            QuestionFiles("questions JSONL (question_id, image, text, category)", "the benchmark's images"),
            _arguments, _requests, column=TableColumn("LLaVA-W", _headline))
