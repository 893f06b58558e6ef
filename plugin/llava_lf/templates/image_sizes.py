"""An image's size read from its file header (no decode), and the whole images of a batch when each image has its
own number of tokens (LLaVA-NeXT), for the mm plugin."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from llava_lf.errors import LlavaLfError


def header_size(image: Any) -> tuple[int, int]:
    """(width, height) of an image as the host's `_regularize_images` would open it, from the header only: a path, a
    file object, bytes, a `{"path", "bytes"}` dict or an opened PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, dict):
        image = BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
    elif isinstance(image, bytes):
        image = BytesIO(image)
    with Image.open(image) as opened:  # reads the header; pixels are decoded only on load()
        return opened.size


def complete_image_runs(images: list, imglens: list[int], batch_ids: list[list[int]], image_token_id: int,
                        counts: list[int]) -> tuple[list, list[int]]:
    """The images whose whole token runs are in each batch row (the leading ones), and their counts per row;
    `counts` holds each image's tokens, in the order of `images`.

    A dropped sample has no image tokens left, a trimmed one may have lost later image turns: their images stay
    out of the batch. A row holding part of an image means something cut it outside our templates.
    """
    kept, kept_lens, start = [], [], 0
    for row, (count_images, ids) in enumerate(zip(imglens, batch_ids)):
        tokens, whole = ids.count(image_token_id), 0
        while whole < count_images and tokens >= counts[start + whole]:
            tokens -= counts[start + whole]
            whole += 1
        if tokens:
            raise LlavaLfError(
                f"batch row {row} holds {ids.count(image_token_id)} image tokens, which are not whole runs of its "
                f"{count_images} image(s) of {counts[start:start + count_images]} tokens: part of an image was cut, "
                "and the model would fail with 'Image features and image tokens do not match'. Tokenise with a "
                "llava_lf template (they trim whole turns), and rebuild any tokenized_path made without them"
            )
        kept += images[start : start + whole]
        kept_lens.append(whole)
        start += count_images
    return kept, kept_lens
