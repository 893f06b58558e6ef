"""Checkpoints in the original LLaVA repositories' layout (liuhaotian/llava-v1.5-*, llava-v1.6-*), for the import
tests: weights as PyTorch .bin shards with an index, as those repositories ship them."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write_bin_shards(state: dict[str, torch.Tensor], folder: Path) -> None:
    """`state` into `folder` as two shards (the first half of its keys, then the rest) and their index."""
    keys = list(state)
    weight_map = {}
    for number, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), start=1):
        name = f"pytorch_model-{number:05d}-of-00002.bin"
        torch.save({key: state[key] for key in part}, folder / name)
        weight_map |= {key: name for key in part}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
