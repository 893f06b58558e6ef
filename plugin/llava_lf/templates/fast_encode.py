"""Tokenise template text fast, with exactly the ids `tokenizer.encode(text, add_special_tokens=False)` gives: a run
of `<image>` tokens is tokenised as one and widened back, and the Rust tokenizer is called directly while its
state is what `encode` would set (docs/templates.md has the costs this removes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

Encode = Callable[[str], list[int]]


def fast_encoder(tokenizer: PreTrainedTokenizer) -> Encode:
    """`encode_text` for the texts of one sample: the tokenizer's state is checked once (nothing between our calls
    changes it; six attribute reads on the Rust object cost about a microsecond per text)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if (backend is None or getattr(backend, "truncation", True) is not None or getattr(backend, "padding", True) is not None
            or getattr(backend, "encode_special_tokens", None) != getattr(tokenizer, "split_special_tokens", False)):
        return partial(tokenizer.encode, add_special_tokens=False)
    if hasattr(backend, "encode_batch_fast"):  # no offsets tracked: about a third faster, same ids
        batch = backend.encode_batch_fast
        return lambda text: batch([text], add_special_tokens=False)[0].ids
    single = backend.encode
    return lambda text: single(text, add_special_tokens=False).ids


def encode_text(tokenizer: PreTrainedTokenizer, text: str) -> list[int]:
    return fast_encoder(tokenizer)(text)


@lru_cache(maxsize=8)
def _run_pattern(image_token: str) -> re.Pattern[str]:
    return re.compile(f"(?:{re.escape(image_token)})+")


@lru_cache(maxsize=16)
def run_text(image_token: str, count: int) -> str:
    """`image_token` repeated `count` times (what the mm plugin writes per image), built once."""
    return image_token * count


@lru_cache(maxsize=16)
def run_ids(image_id: int, count: int) -> list[int]:
    """`image_id` repeated `count` times, built once: only ever extended from, never handed out."""
    return [image_id] * count


def collapse_runs(text: str, image_token: str, expected: int = 0) -> tuple[str, list[int]]:
    """The text with each run of `image_token` reduced to one copy, and the run lengths in order.

    `expected` (the run length last seen) is tried first: one comparison against a remembered run instead of a scan
    of the whole 4 KB run (a count over it costs about 2 us a sample).
    """
    first = text.find(image_token)
    if first < 0:
        return text, []
    width = len(image_token)
    if expected > 1:
        end = first + width * expected
        if text.startswith(run_text(image_token, expected), first) and text.find(image_token, end) < 0:
            return text[:first] + image_token + text[end:], [expected]
    total = text.count(image_token)
    if text.startswith(run_text(image_token, total), first):  # one run: no regex over 4 KB
        return text[:first] + image_token + text[first + width * total :], [total]
    runs: list[int] = []

    def collapse(run: re.Match[str]) -> str:
        runs.append(len(run.group()) // width)
        return image_token

    return _run_pattern(image_token).sub(collapse, text), runs


def widen_into(ids: list[int], encode: Encode, collapsed: str, runs: list[int], image_token: str, image_id: int,
               encode_head: Encode) -> bool:
    """Append to `ids` the ids of the text that `collapsed` (from `collapse_runs`) stands for, each image token widened
    back to its run; False, with `ids` unchanged, when the image token is not one token here (splicing would be wrong).

    The text before the first image (the system text and `USER: `, the same in every sample) is a piece of
    its own once added tokens split the text, so `encode_head` may remember its ids.
    """
    first = collapsed.find(image_token)
    rest = encode(collapsed[first:])  # starts with the image token: its text is no first piece
    if len(runs) == 1:
        if rest.count(image_id) != 1:
            return False
        positions = [rest.index(image_id)]
    else:
        positions = [index for index, token_id in enumerate(rest) if token_id == image_id]
        if len(positions) != len(runs):
            return False
    if first:
        ids += encode_head(collapsed[:first])
    start = 0
    for position, count in zip(positions, runs):
        ids += rest[start:position]
        ids += run_ids(image_id, count)
        start = position + 1
    ids += rest[start:]
    return True


def encode_with_image_runs(tokenizer: PreTrainedTokenizer, text: str, image_token: str, image_id: int | None = None,
                           encode_head: Encode | None = None) -> list[int]:
    """`encode_text`, with each run of `image_token` tokenised as one copy and widened back."""
    collapsed, runs = collapse_runs(text, image_token)
    encode = fast_encoder(tokenizer)
    if not runs or max(runs) == 1:
        return encode(text)
    if image_id is None:
        image_id = tokenizer.convert_tokens_to_ids(image_token)
    ids: list[int] = []
    if widen_into(ids, encode, collapsed, runs, image_token, image_id, encode_head or encode):
        return ids
    return encode(text)  # `<image>` is not one token here
