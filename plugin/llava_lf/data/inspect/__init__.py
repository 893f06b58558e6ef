"""`llava-lf inspect`: a data card (card.md, card.json, PNG charts) for one or more LLaVA datasets."""

from .scan import DatasetInput, InspectOptions, inspect_datasets

__all__ = ["DatasetInput", "InspectOptions", "inspect_datasets"]
