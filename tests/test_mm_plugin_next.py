"""LLaVA-NeXT image-token counts from an image's size alone (`common/image_tokens.NextGeometry`) against the installed
transformers' `LlavaNextProcessor`, on the settings we ship: the tiny test tower (48-px tiles, 16-px patches) and
CLIP-L/336 (patch 14), both with the 1.6 grids. Pure arithmetic on both sides: no pixels."""

from __future__ import annotations

import pytest

from llava_lf.common.anyres import NEXT_GRIDS, grid_pinpoints
from llava_lf.common.image_tokens import host_resized_size, next_geometry

# (width, height) edge cases from LLaVA-NeXT's facts: one tile exactly and under it (the tie between 1x2 and 2x1),
# a pixel over a tile, exact 3:1 and 1:3, the rounding cases where round-7 and plain truncation part, 1-2 px thin.
EDGES_336 = ((336, 336), (337, 337), (300, 200), (200, 300), (110, 352), (352, 110), (47, 1128), (1128, 47),
             (1008, 336), (336, 1008), (640, 480), (1024, 899), (1920, 1080), (1000, 250), (400, 900), (1, 1),
             (1, 2048), (2048, 2), (335, 336), (672, 672), (673, 336))
WORKED_336 = {(1024, 899): 2634, (640, 480): 2340, (1920, 1080): 1948, (1000, 250): 1890, (400, 900): 1926,
              (336, 336): 1176, (300, 200): 1464, (110, 352): 1392}  # LLaVA-NeXT's facts, 1.9 (transformers)


def next_processor(tile: int, patch: int, extra: int = 1):
    """A LlavaNextProcessor with the 1.6 grids for `tile`-px tiles (the tokenizer plays no part in the count)."""
    from tokenizers import Tokenizer, models
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1},
                                                                                     unk_token="<unk>")),
                                        unk_token="<unk>", extra_special_tokens=["<image>"])
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                              image_grid_pinpoints=grid_pinpoints(NEXT_GRIDS, tile))
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                              vision_feature_select_strategy="default", num_additional_image_tokens=extra)


def processor_count(processor, width: int, height: int) -> int:
    """What LlavaNextProcessor.__call__ expands one `width` x `height` image to."""
    tile = processor.image_processor.crop_size["height"]
    count = processor._get_number_of_features(height, width, tile, tile)
    return count - 1 if processor.vision_feature_select_strategy == "default" else count


def test_the_1_6_pinpoints_are_transformers_height_width_list():
    assert grid_pinpoints(NEXT_GRIDS, 336) == [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


@pytest.mark.parametrize(("tile", "patch", "sizes"), [
    (48, 16, [(w, h) for w in range(1, 200, 3) for h in range(1, 200, 4)]),  # 3,350 sizes around 1-4 tiles
    (336, 14, [(w, h) for w in range(1, 2200, 29) for h in range(1, 2200, 31)] + list(EDGES_336)),  # 5,400
])
def test_header_count_equals_the_processor_for_every_size(tile, patch, sizes):
    processor = next_processor(tile, patch)
    geometry = next_geometry(processor)
    wrong = [(w, h, geometry.tokens_at(w, h), processor_count(processor, w, h)) for w, h in sizes
             if geometry.tokens_at(w, h) != processor_count(processor, w, h)]
    assert not wrong, f"{len(wrong)} of {len(sizes)} sizes counted differently, e.g. {wrong[:5]}"


def test_worked_examples_and_the_processor_config():
    geometry = next_geometry(next_processor(336, 14))
    assert {size: geometry.tokens_at(*size) for size in WORKED_336} == WORKED_336
    # processor_config.json without num_additional_image_tokens: one short, as transformers counts it
    assert next_geometry(next_processor(336, 14, extra=0)).tokens_at(640, 480) == 2339


def test_count_follows_the_hosts_resize():
    """A tall 352x1949 image reaches the processor at the host's 768*768 limit (326x1807: 1512 tokens, not 1656),
    a 10x10 one at its 32*32 floor."""
    geometry = next_geometry(next_processor(336, 14))
    assert host_resized_size(4000, 3000, 768 * 768, 32 * 32) == (886, 665)
    assert host_resized_size(10, 10, 768 * 768, 32 * 32) == (32, 32)
    assert host_resized_size(352, 1949, 768 * 768, 32 * 32) == (326, 1807)
    assert (geometry.tokens(352, 1949), geometry.tokens_at(352, 1949)) == (1512, 1656)
    assert geometry.tokens(10, 10) == geometry.tokens_at(32, 32)
