"""LLaVA-NeXT's part of an assembly: the grids as pinpoints for the tower at hand, the LlavaNext config and
processor as llava-hf's 1.6 checkpoints carry them, and `image_newline` initialised as the original.

llava-hf/llava-v1.6-*-hf: `preprocessor_config.json` is a `LlavaNextImageProcessor` with the tower's CLIP settings
(shortest edge and crop = the tile), `image_grid_pinpoints` and `do_pad`; `processor_config.json` has
`num_additional_image_tokens: 1` for CLIP's CLS (transformers subtracts one for "default" whatever it says, so
0 there makes every count one short).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from llava_lf.common.anyres import grid_pinpoints, grid_problems

from .spec import AssemblyError

NEWLINE_KEY = "model.image_newline"
NEWLINE_SALT = 2  # seed + 0 / + 1 draw the new embedding and head rows
# Settings of the tower's own image processor carried into LlavaNext's (size and crop become the tile).
CARRIED = ("resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def check_grids(grids: tuple[str, ...], where: str) -> list[str]:
    problems = grid_problems(grids, where)
    if len(set(grids)) != len(grids):
        problems.append(f"{where}: anyres_grids {list(grids)} repeats a grid; list each once")
    return problems


def check_next_choices(grids: tuple[str, ...], strategy: str, cls_tokens: int, pad_to_square: bool) -> list[str]:
    """What LLaVA-NeXT cannot combine with AnyRes, each with its fix."""
    problems = check_grids(grids, "anyres_grids")
    if strategy == "full" and cls_tokens:
        problems.append("select_strategy full keeps CLIP's CLS token, which AnyRes cannot lay out as a grid of "
                        "features (transformers fails on it); use select_strategy default")
    if pad_to_square:
        problems.append("pad_to_square is LLaVA-1.5's single-tile padding; AnyRes tiles the image itself: turn "
                        "it off (--no-pad-to-square) or drop anyres_grids")
    return problems


def next_image_processor(tower_processor: Any, tile: int, grids: tuple[str, ...]):
    from transformers import LlavaNextImageProcessor

    settings = {key: value for key, value in tower_processor.to_dict().items() if key in CARRIED}
    return LlavaNextImageProcessor(**settings, size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                   do_resize=True, do_center_crop=True, do_pad=True,
                                   image_grid_pinpoints=grid_pinpoints(grids, tile))


def next_processor(image_processor: Any, tokenizer: Any, patch_size: int, strategy: str, cls_tokens: int,
                   template: str):
    from transformers import LlavaNextProcessor

    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                              vision_feature_select_strategy=strategy, num_additional_image_tokens=cls_tokens,
                              chat_template=template)


def next_config(vision_config: Any, text_config: Any, grids: tuple[str, ...], **choices):
    from transformers import LlavaNextConfig

    config = LlavaNextConfig(vision_config=vision_config, text_config=text_config,
                             image_grid_pinpoints=grid_pinpoints(grids, vision_config.image_size), **choices)
    config.architectures = ["LlavaNextForConditionalGeneration"]
    return config


def fresh_newline(width: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """randn(d) / sqrt(d), as the original builds it at the start of stage 2 (and transformers' _init_weights)."""
    generator = torch.Generator().manual_seed(seed + NEWLINE_SALT)
    return (torch.randn(width, generator=generator, dtype=torch.float32) / math.sqrt(width)).to(dtype)


def grids_of(pinpoints: list[list[int]], tile: int, where: str) -> tuple[str, ...]:
    """Pixel pinpoints of an original config as grids of `tile`-px tiles; every side must be whole tiles."""
    grids = []
    for pair in pinpoints:
        if len(pair) != 2 or any(side % tile or side <= 0 for side in pair):
            raise AssemblyError(f"{where}: image_grid_pinpoints {pair} is not a whole number of {tile}-px tiles "
                                "(the tower's image_size); give the vision tower this model was trained with")
        grids.append(f"{pair[0] // tile}x{pair[1] // tile}")
    return tuple(grids)


def split_processor_files(directory: Path) -> None:
    """The hub's layout: the image processor in preprocessor_config.json, the rest in processor_config.json
    (transformers 5 nests the first in the second; 4.x and the hub's own checkpoints keep them apart)."""
    file = directory / "processor_config.json"
    settings = json.loads(file.read_text())
    image_processor = settings.pop("image_processor", None)
    if image_processor is None:
        return
    image_processor["processor_class"] = settings.get("processor_class")
    (directory / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2, sort_keys=True) + "\n")
    file.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
