"""Teacher replies -> question/answer turns, or a rejection with its reason.

Conversation and complex replies are `Question: ...` / `Answer: ...` blocks (answers may span lines;
markdown bold around the labels and `Q:`/`A:` are accepted). A detail reply is one description.
A reply is rejected, never repaired, when it does not have the expected shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llava_lf.formats import IMAGE_TOKEN

from .tasks import TaskType

MIN_DETAIL_WORDS = 10
EXCHANGES: dict[TaskType, tuple[int, int | None]] = {"conversation": (2, None), "complex": (1, 1)}  # min, max
_QA_LABEL = re.compile(r"^\s*(?:\*\*)?\s*(question|answer|q|a)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)
# The student sees pixels, not our symbols: a reply that talks about them would teach it to.
_CONTEXT_LEAKS = re.compile(
    r"\bcaptions?\b|\bbounding box(es)?\b|\bcoordinates?\b|\[\s*[01]?\.\d{2,3}\s*,", re.IGNORECASE)


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str


class ReplyRejected(ValueError):
    """The teacher answered, but not in a shape we can use; `reason` is a short stable key for the report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _labelled_blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(text before the first label, [(label, body), ...]) with labels folded to 'question' / 'answer'."""
    preamble, blocks = [], []
    for line in text.splitlines():
        match = _QA_LABEL.match(line)
        if match:
            label = "question" if match.group(1).lower() in ("question", "q") else "answer"
            blocks.append((label, [line[match.end():]]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble).strip(), [(label, "\n".join(body).strip()) for label, body in blocks]


def parse_exchanges(text: str, task: TaskType) -> list[Exchange]:
    preamble, blocks = _labelled_blocks(text)
    if not blocks:
        raise ReplyRejected("no_exchanges", "no 'Question:' / 'Answer:' lines found")
    exchanges = []
    for index in range(0, len(blocks), 2):
        pair = blocks[index:index + 2]
        labels = [label for label, _ in pair]
        if labels != ["question", "answer"]:
            raise ReplyRejected("unpaired", f"block {index + 1} starts {' then '.join(labels)}; "
                                "expected a Question followed by an Answer")
        (_, question), (_, answer) = pair
        if not question or not answer:
            raise ReplyRejected("empty_turn", f"exchange {len(exchanges) + 1} has an empty question or answer")
        exchanges.append(Exchange(question, answer))
    low, high = EXCHANGES[task]
    if len(exchanges) < low or (high is not None and len(exchanges) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        raise ReplyRejected("exchange_count", f"{len(exchanges)} exchange(s), {task} needs {wanted}")
    if preamble and len(preamble) > 200:  # a short "Sure, here it is:" is chatter; a long one is content lost
        raise ReplyRejected("preamble", f"{len(preamble)} characters before the first Question")
    return exchanges


def parse_detail(text: str) -> str:
    description = text.strip()
    if _QA_LABEL.match(description):
        raise ReplyRejected("labelled_detail", "a description was asked for but the reply is a Question/Answer list")
    words = len(description.split())
    if words < MIN_DETAIL_WORDS:
        raise ReplyRejected("too_short", f"{words} word(s); a description needs at least {MIN_DETAIL_WORDS}")
    return description


def parse_reply(task: TaskType, text: str, finish_reason: str | None) -> list[Exchange] | str:
    """Exchanges for conversation/complex, a description for detail; raises ReplyRejected."""
    if not text.strip():
        raise ReplyRejected("empty", "the reply has no text")
    if finish_reason == "length":
        raise ReplyRejected("truncated", "the reply hit max_tokens; raise --max-tokens")
    if IMAGE_TOKEN in text:
        raise ReplyRejected("image_token", f"the reply contains a literal {IMAGE_TOKEN}")
    leak = _CONTEXT_LEAKS.search(text)
    if leak:
        raise ReplyRejected("mentions_context", f"the reply mentions {leak.group(0)!r}, which the image does not show")
    return parse_detail(text) if task == "detail" else parse_exchanges(text, task)
