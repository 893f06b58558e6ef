"""Modality grouping: the order LLaVA-1.5 trains in (each global batch all-image or all-text), written into the data
by `llava-lf group-modality` and checked by the training callback with `group_by_modality=true` (docs/recipe.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from llava_lf.errors import LlavaLfError


@dataclass(frozen=True)
class GroupedOrder:
    order: list[int]  # source row indices in training order
    batch: int
    image_batches: int  # homogeneous chunks of `batch` image samples
    text_batches: int  # homogeneous chunks of `batch` text-only samples
    tail: int  # leftover samples of both kinds, last (at most 2 x (batch - 1))


def grouped_order(has_image: Sequence[bool], batch: int, seed: int) -> GroupedOrder:
    """Shuffle each modality, cut it into chunks of `batch`, shuffle the chunks; leftovers of both go last.

    Any micro-batch size that divides `batch` then sees one modality per micro-batch, except inside the tail.
    """
    if batch < 1:
        raise LlavaLfError(f"batch must be a positive integer, got {batch}")
    rng = random.Random(seed)
    images = [index for index, flag in enumerate(has_image) if flag]
    texts = [index for index, flag in enumerate(has_image) if not flag]
    rng.shuffle(images)
    rng.shuffle(texts)

    def chunks(indices: list[int]) -> tuple[list[list[int]], list[int]]:
        full = len(indices) - len(indices) % batch
        return [indices[start:start + batch] for start in range(0, full, batch)], indices[full:]

    image_chunks, image_tail = chunks(images)
    text_chunks, text_tail = chunks(texts)
    blocks = image_chunks + text_chunks
    rng.shuffle(blocks)
    order = [index for block in blocks for index in block] + image_tail + text_tail
    return GroupedOrder(order, batch, len(image_chunks), len(text_chunks), len(image_tail) + len(text_tail))


@dataclass(frozen=True)
class ModalityCheck:
    micro_batch: int
    image_samples: int
    text_samples: int
    image_batches: int
    text_batches: int
    mixed_batches: list[int]  # micro-batch numbers (0-based, in training order) holding both kinds

    @property
    def grouped(self) -> bool:
        # One mixed micro-batch is where the two leftover tails meet.
        return len(self.mixed_batches) <= 1

    def as_dict(self) -> dict:
        return {"micro_batch": self.micro_batch, "image_samples": self.image_samples,
                "text_samples": self.text_samples, "image_batches": self.image_batches,
                "text_batches": self.text_batches, "mixed_batches": len(self.mixed_batches),
                "first_mixed_batches": self.mixed_batches[:10]}


def check_grouping(has_image: Sequence[bool], micro_batch: int) -> ModalityCheck:
    """Count the consecutive micro-batches of `micro_batch` rows by modality (the last one may be short)."""
    if micro_batch < 1:
        raise LlavaLfError(f"micro_batch must be a positive integer, got {micro_batch}")
    images = text = 0
    mixed: list[int] = []
    for number, start in enumerate(range(0, len(has_image), micro_batch)):
        with_image = sum(1 for flag in has_image[start:start + micro_batch] if flag)
        size = min(micro_batch, len(has_image) - start)
        if with_image == size:
            images += 1
        elif with_image == 0:
            text += 1
        else:
            mixed.append(number)
    n_image = sum(1 for flag in has_image if flag)
    return ModalityCheck(micro_batch, n_image, len(has_image) - n_image, images, text, mixed)
