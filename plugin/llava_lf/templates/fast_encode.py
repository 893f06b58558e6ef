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


def encode_text(tokenizer: PreTrainedTokenizer, text: str) -> list[int]:
    backend = getattr(tokenizer, "_tokenizer", None)
    if (backend is None or getattr(backend, "truncation", True) is not None or getattr(backend, "padding", True) is not None
            or getattr(backend, "encode_special_tokens", None) != getattr(tokenizer, "split_special_tokens", False)):
        return tokenizer.encode(text, add_special_tokens=False)
    if hasattr(backend, "encode_batch_fast"):  # no offsets tracked: about a third faster, same ids
        return backend.encode_batch_fast([text], add_special_tokens=False)[0].ids
    return backend.encode(text, add_special_tokens=False).ids


@lru_cache(maxsize=8)
def _run_pattern(image_token: str) -> re.Pattern[str]:
    return re.compile(f"(?:{re.escape(image_token)})+")


def _collapse_runs(text: str, image_token: str) -> tuple[str, list[int]]:
    """The text with each run of `image_token` reduced to one copy, and the run lengths in order."""
    width, total = len(image_token), text.count(image_token)
    first = text.find(image_token)
    if total and text.startswith(image_token * total, first):  # the usual case, one run: no regex over 4 KB
        return text[:first] + image_token + text[first + width * total :], [total]
    runs: list[int] = []

    def collapse(run: re.Match[str]) -> str:
        runs.append(len(run.group()) // width)
        return image_token

    return _run_pattern(image_token).sub(collapse, text), runs


def encode_with_image_runs(tokenizer: PreTrainedTokenizer, text: str, image_token: str, image_id: int | None = None,
                           encode_head: Callable[[str], list[int]] | None = None) -> list[int]:
    """`encode_text`, with each run of `image_token` tokenised as one copy and widened back.

    The text before the first image (the system text and `USER: `, the same in every sample) is a piece of
    its own once added tokens split the text, so `encode_head` may remember its ids.
    """
    collapsed, runs = _collapse_runs(text, image_token)
    if not runs or max(runs) == 1:
        return encode_text(tokenizer, text)

    first = collapsed.find(image_token)
    head = (encode_head or partial(encode_text, tokenizer))(collapsed[:first]) if first else []
    ids = encode_text(tokenizer, collapsed[first:])  # starts with the image token: its text is no first piece
    if image_id is None:
        image_id = tokenizer.convert_tokens_to_ids(image_token)
    if len(runs) == 1 and ids.count(image_id) == 1:  # one list built in place: the run is hundreds of ids
        position = ids.index(image_id)
        spliced = [*head, *ids[:position]]
        spliced += [image_id] * runs[0]
        spliced += ids[position + 1 :]
        return spliced
    positions = [index for index, token_id in enumerate(ids) if token_id == image_id]
    if len(positions) != len(runs):  # `<image>` is not one token here: splicing would change the ids
        return encode_text(tokenizer, text)

    spliced: list[int] = list(head)
    start = 0
    for position, count in zip(positions, runs):
        spliced += ids[start:position]
        spliced += [image_id] * count
        start = position + 1
    spliced += ids[start:]
    return spliced
