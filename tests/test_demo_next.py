"""`llava-lf demo --next`'s own pieces: pictures with small shapes, and an earlier demo's warm-up taken only when
it learned the same text. Its run end to end shares the 1.5 demo's smoke run (tests/test_demo.py)."""

from __future__ import annotations

import random

import pytest

from llava_lf.demo.next_demo import PICTURE_SIZE, SMALL_SHARE
from llava_lf.demo.shapes import GRID, make_scenes, questions

pytestmark = pytest.mark.host


def test_small_shapes_sit_in_one_tile_patch_and_questions_say_so():
    """A small shape lies inside one 16-px patch of a 48-px tile at full size (what AnyRes's tiles see); a large
    one spans patches. A question is flagged small when its shape is (count: when the scene holds one)."""
    patch = PICTURE_SIZE // GRID // 2
    scenes = make_scenes(300, seed=3, size=PICTURE_SIZE, small_share=SMALL_SHARE)
    shapes = [shape for scene in scenes for shape in scene.shapes]
    for shape in shapes:
        x, y, w, h = shape.box
        in_one_patch = x // patch == (x + w - 1) // patch and y // patch == (y + h - 1) // patch
        assert in_one_patch == shape.small, shape
        assert PICTURE_SIZE // GRID * (shape.cell % GRID) <= x < PICTURE_SIZE // GRID * (shape.cell % GRID + 1)
    assert 0.4 < sum(shape.small for shape in shapes) / len(shapes) < 0.6
    rng = random.Random(0)
    for scene in scenes:
        for qa in questions(scene, rng):
            named = [shape for shape in scene.shapes if shape.kind in qa.question or shape.color in qa.question]
            if qa.qtype == "count":
                assert qa.small == any(shape.small for shape in scene.shapes)
            elif qa.qtype != "presence":  # a presence probe may name a shape that is not there
                assert len(named) == 1 and qa.small == named[0].small, qa
    assert not any(shape.small for scene in make_scenes(100, seed=3, size=48) for shape in scene.shapes)


def test_a_warm_up_is_taken_only_when_finished_on_the_same_text(tmp_path):
    from llava_lf.demo.pipeline import reuse_warm_lm
    from llava_lf.demo.tiny_models import train_tokenizer
    from llava_lf.errors import LlavaLfError

    texts = ["<s>[red circle][empty] A red circle.", "<s>[empty][blue cross] A blue cross at the top."] * 20
    ours = train_tokenizer(texts, 300)
    warm = tmp_path / "llama_warm"
    ours.save_pretrained(warm)
    (warm / "config.json").write_text("{}")
    with pytest.raises(LlavaLfError, match="not a finished warm-up"):
        reuse_warm_lm(warm, ours, tmp_path / "out")
    (warm / "trainer_state.json").write_text("{}")
    with pytest.raises(LlavaLfError, match="trained on other text"):
        reuse_warm_lm(warm, train_tokenizer(["<s>a green square and a yellow triangle."] * 40, 300), tmp_path / "out")
    reuse_warm_lm(warm, ours, tmp_path / "out")
    assert (tmp_path / "out" / "trainer_state.json").is_file()
