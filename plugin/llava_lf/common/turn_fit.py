"""Fit a tokenised conversation into cutoff_len at turn boundaries, so no image is ever cut: keep the longest run of
whole turn pairs that fits, drop a sample whose first pair does not (docs/templates.md). The templates and
`llava-lf convert --cutoff-len` share this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llava_lf.errors import LlavaLfError

Action = Literal["kept", "trimmed", "dropped"]
Pairs = list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class TurnFit:
    pair_lengths: tuple[int, ...]
    kept_pairs: int

    @property
    def tokens(self) -> int:
        return sum(self.pair_lengths)

    @property
    def kept_tokens(self) -> int:
        return sum(self.pair_lengths[: self.kept_pairs])

    @property
    def action(self) -> Action:
        if self.kept_pairs == len(self.pair_lengths):
            return "kept"
        return "trimmed" if self.kept_pairs else "dropped"


def fit_turns(pair_lengths: list[int], budget: int) -> TurnFit:
    """Keep the longest prefix of whole pairs whose tokens add up to at most `budget`."""
    total, kept = 0, 0
    for length in pair_lengths:
        if total + length > budget:
            break
        total, kept = total + length, kept + 1
    return TurnFit(pair_lengths=tuple(pair_lengths), kept_pairs=kept)


def dropped_placeholder(bos_token_id: int | None, eos_token_id: int | None) -> Pairs:
    """What a dropped sample becomes: one masked token (never empty: a batch of them must still run)."""
    token = bos_token_id if bos_token_id is not None else eos_token_id
    if token is None:
        raise LlavaLfError("the tokenizer has neither a BOS nor an EOS token to stand in for a dropped sample")
    return [([token], [])]


def image_tokens_in(pairs: Pairs, image_token_id: int) -> int:
    return sum(source.count(image_token_id) + target.count(image_token_id) for source, target in pairs)


def complete_image_blocks(images: list, imglens: list[int], batch_ids: list[list[int]], image_token_id: int,
                          seqlen: int) -> tuple[list, list[int]]:
    """The images whose whole token blocks are in each batch row (the leading ones), and their counts per row.

    A dropped sample has no image tokens left, a trimmed one may have lost later image turns: their images
    stay out of the batch. A row holding part of an image means something cut it outside our templates.
    """
    kept, kept_lens, start = [], [], 0
    for row, (count_images, ids) in enumerate(zip(imglens, batch_ids)):
        tokens = ids.count(image_token_id)
        blocks, partial = divmod(tokens, seqlen)
        if partial or blocks > count_images:
            raise LlavaLfError(
                f"batch row {row} holds {tokens} image tokens for {count_images} image(s) of {seqlen} tokens: part of "
                "an image was cut, and the model would fail with 'Image features and image tokens do not match'. "
                "Tokenise with template llava_v1 or llava_plain (they trim whole turns), and rebuild any "
                "tokenized_path made without them"
            )
        kept += images[start : start + blocks]
        kept_lens.append(blocks)
        start += count_images
    return kept, kept_lens
