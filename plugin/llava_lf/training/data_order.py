"""What order the host's training dataloader will read the training set in, and each row's modality."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _reachable(dataloader: Any) -> Iterator[Any]:
    """The dataloader and every sampler reachable from it (accelerate wraps torch's in layers)."""
    stack, seen = [dataloader], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(getattr(node, attribute, None) for attribute in ("sampler", "batch_sampler", "base_dataloader"))


def sampling(dataloader: Any) -> tuple[bool, list[str]]:
    """(reads the dataset front to back, the sampler classes seen): in order under `disable_shuffling: true`."""
    from torch.utils import data

    nodes = list(_reachable(dataloader))[1:]
    sequential = any(isinstance(node, data.SequentialSampler) for node in nodes)
    shuffled = any(isinstance(node, data.RandomSampler) for node in nodes)
    return sequential and not shuffled, sorted({type(node).__name__ for node in nodes})


def image_flags(dataset: Any, column: str = "images") -> list[bool] | None:
    """Per row, in dataset order: does it carry an image? None when the dataset has no such column."""
    names = getattr(dataset, "column_names", None)
    if names is None or column not in names:
        return None
    import pyarrow.compute as pc

    values = dataset.select_columns([column]).with_format("arrow")[column]  # honours select()/shuffle() indices
    lengths = pc.fill_null(pc.list_value_length(values), 0)
    return [length > 0 for length in lengths.to_pylist()]
