"""Tokenise text that holds runs of image tokens without tokenising every copy.

After image-token expansion a LLaVA-1.5 prompt holds 576 `<image>` tokens in a row; the tokenizer spends
about 10x longer splitting those than on the rest of the sample. `<image>` is an added special token, so
the text around a run is tokenised the same whether the run holds one copy or 576 (added tokens split the
text first, and each piece is tokenised on its own). We therefore tokenise the text with each run
collapsed to one copy and widen that id again. A tokenizer without a single `<image>` token gets the
plain path.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer


@lru_cache(maxsize=8)
def _run_pattern(image_token: str) -> re.Pattern[str]:
    return re.compile(f"(?:{re.escape(image_token)})+")


def encode_with_image_runs(tokenizer: PreTrainedTokenizer, text: str, image_token: str) -> list[int]:
    """`tokenizer.encode(text, add_special_tokens=False)`, with runs of `image_token` spliced in as ids."""
    pattern = _run_pattern(image_token)
    width = len(image_token)
    runs = [len(run) // width for run in pattern.findall(text)]
    if not runs or max(runs) == 1:
        return tokenizer.encode(text, add_special_tokens=False)

    ids = tokenizer.encode(pattern.sub(image_token, text), add_special_tokens=False)
    image_id = tokenizer.convert_tokens_to_ids(image_token)
    positions = [index for index, token_id in enumerate(ids) if token_id == image_id]
    if len(positions) != len(runs):  # `<image>` is not one token here: splicing would change the ids
        return tokenizer.encode(text, add_special_tokens=False)

    spliced: list[int] = []
    start = 0
    for position, count in zip(positions, runs):
        spliced += ids[start:position]
        spliced += [image_id] * count
        start = position + 1
    spliced += ids[start:]
    return spliced
