"""`llava-lf inspect`: a data card (card.md, card.json, PNG charts) for one or more LLaVA datasets."""

from __future__ import annotations

from pathlib import Path

from .options import DatasetInput, InspectOptions
from .scan import inspect_datasets

__all__ = ["DatasetInput", "InspectOptions", "inspect_datasets", "write_data_card"]


def write_data_card(datasets: dict[str, Path], image_folder: Path | None, out: Path) -> Path:
    """Inspect `datasets` (label -> LLaVA file) side by side and write the card to `out`; returns card.md."""
    from .card import write_card

    card = inspect_datasets([DatasetInput(label, Path(path)) for label, path in datasets.items()],
                            InspectOptions(image_folder=image_folder), out)
    return write_card(card, out)[1]
