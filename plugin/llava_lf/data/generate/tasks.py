"""The three instruction types: their prompts (editable text files) and the chat messages sent for each image.

A prompt folder holds, per type, `{type}_system.txt` and `{type}_examples.txt`, plus
`detail_instructions.txt` (the human questions of detailed-description samples, one a line). An examples
file is a header, then blocks that open with a `=== context` line and a `=== reply` line:
the context is rendered like a real image's, the reply is what the teacher should answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llava_lf.errors import LlavaLfError

from .coco import ImageContext

TaskType = Literal["conversation", "detail", "complex"]
TASK_TYPES: tuple[TaskType, ...] = ("conversation", "detail", "complex")
USES_BOXES: dict[TaskType, bool] = {"conversation": False, "detail": True, "complex": True}
PACKAGED_PROMPTS = Path(__file__).with_name("prompts")
CONTEXT_MARK, REPLY_MARK = "=== context", "=== reply"


@dataclass(frozen=True)
class Example:
    context: str
    reply: str


@dataclass(frozen=True)
class TaskPrompt:
    system: str
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class PromptSet:
    tasks: dict[TaskType, TaskPrompt]
    detail_instructions: tuple[str, ...]


def parse_task_types(text: str) -> list[TaskType]:
    """`conversation,detail` -> the types, in the order given; unknown names are an error naming the valid ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASK_TYPES]
    if unknown or not names:
        raise LlavaLfError(f"unknown type(s) {unknown or [text]}; choose from {', '.join(TASK_TYPES)}")
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


def _read(folder: Path, name: str) -> str:
    path = folder / name
    if not path.is_file():
        raise LlavaLfError(f"prompt folder {folder} has no {name}; copy it from {PACKAGED_PROMPTS}")
    return path.read_text(encoding="utf-8")


def parse_examples(text: str, source: str) -> tuple[Example, ...]:
    """Split an examples file into (context, reply) pairs; everything before the first block is a header."""
    examples, section, buffers = [], None, {CONTEXT_MARK: [], REPLY_MARK: []}

    def close(line_number: int) -> None:
        context, reply = ("\n".join(buffers[mark]).strip() for mark in (CONTEXT_MARK, REPLY_MARK))
        if not context or not reply:
            raise LlavaLfError(f"{source}: the example ending at line {line_number} needs a non-empty "
                              f"'{CONTEXT_MARK}' block followed by a non-empty '{REPLY_MARK}' block")
        examples.append(Example(context, reply))

    for line_number, line in enumerate(text.splitlines(), start=1):
        mark = line.strip()
        if mark == CONTEXT_MARK:
            if section is not None:
                close(line_number - 1)
            section, buffers = CONTEXT_MARK, {CONTEXT_MARK: [], REPLY_MARK: []}
        elif mark == REPLY_MARK:
            if section != CONTEXT_MARK:
                raise LlavaLfError(f"{source}:{line_number}: '{REPLY_MARK}' must follow a '{CONTEXT_MARK}' block")
            section = REPLY_MARK
        elif section is not None:
            buffers[section].append(line)
    if section is not None:
        close(len(text.splitlines()))
    return tuple(examples)


def load_prompts(folder: Path = PACKAGED_PROMPTS) -> PromptSet:
    tasks = {}
    for task in TASK_TYPES:
        system = _read(folder, f"{task}_system.txt").strip()
        if not system:
            raise LlavaLfError(f"{folder / f'{task}_system.txt'} is empty")
        examples = parse_examples(_read(folder, f"{task}_examples.txt"), str(folder / f"{task}_examples.txt"))
        tasks[task] = TaskPrompt(system, examples)
    lines = _read(folder, "detail_instructions.txt").splitlines()
    instructions = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not instructions:
        raise LlavaLfError(f"{folder / 'detail_instructions.txt'} lists no instruction")
    return PromptSet(tasks, instructions)


def build_messages(prompts: PromptSet, task: TaskType, context: ImageContext, shots: int | None) -> list[dict]:
    """System message, few-shot user/assistant pairs, then this image's context as the last user turn."""
    prompt = prompts.tasks[task]
    examples = prompt.examples if shots is None else prompt.examples[:shots]
    messages = [{"role": "system", "content": prompt.system}]
    for example in examples:
        messages += [{"role": "user", "content": example.context}, {"role": "assistant", "content": example.reply}]
    messages.append({"role": "user", "content": context.render(with_boxes=USES_BOXES[task])})
    return messages


def detail_instruction(prompts: PromptSet, image_id: int, seed: int) -> str:
    """The human question of a detailed-description sample: drawn per image, the same on every rerun."""
    return random.Random(f"{seed}:{image_id}").choice(prompts.detail_instructions)
