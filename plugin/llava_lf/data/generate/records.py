"""What the generator writes: LLaVA JSON records (as `llava-lf convert` reads them) and rejection rows."""

from __future__ import annotations

from typing import TypedDict

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN, LlavaTurn

from .coco import ImageContext
from .parse import Exchange
from .tasks import TaskType


class GeneratedRecord(TypedDict):
    id: str
    image: str
    conversations: list[LlavaTurn]


class RejectedRow(TypedDict):
    id: str
    image: str
    type: str
    reason: str
    detail: str
    reply: str


def record_id(image_id: int, task: TaskType) -> str:
    """One id per (image, type): what a restart uses to skip finished work."""
    return f"{image_id}-{task}"


def image_path(context: ImageContext, image_prefix: str) -> str:
    return f"{image_prefix}{context.file_name}"


def build_record(context: ImageContext, task: TaskType, parsed: list[Exchange] | str, image_prefix: str,
                 instruction: str | None) -> GeneratedRecord:
    """Human/gpt turns with `<image>` leading the first human turn, as LLaVA-1.5's data has it after loading."""
    if isinstance(parsed, str):
        if instruction is None:
            raise ValueError("a detail record needs the human instruction it answers")
        pairs = [(instruction, parsed)]
    else:
        pairs = [(exchange.question, exchange.answer) for exchange in parsed]
    turns: list[LlavaTurn] = []
    for index, (question, answer) in enumerate(pairs):
        human = f"{IMAGE_PLACEHOLDER}\n{question}" if index == 0 else question
        turns += [{"from": ROLE_HUMAN, "value": human}, {"from": ROLE_GPT, "value": answer}]
    return {"id": record_id(context.image_id, task), "image": image_path(context, image_prefix), "conversations": turns}


def rejected_row(context: ImageContext, task: TaskType, image_prefix: str, reason: str, detail: str,
                 reply: str) -> RejectedRow:
    return {"id": record_id(context.image_id, task), "image": image_path(context, image_prefix), "type": task,
            "reason": reason, "detail": detail, "reply": reply}
