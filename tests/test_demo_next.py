"""`llava-lf demo --next`: pictures with small shapes, and the NeXT path end to end (stage 1 as LLaVA-1.5, the
upgrade, an AnyRes stage 2) through the real CLI, reported beside LLaVA-1.5 with small-shape questions apart."""

from __future__ import annotations

import json
import random

import pytest
from conftest import REPO

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


@pytest.mark.slow
def test_next_demo_end_to_end_smoke(tmp_path):
    """Every step through the real CLI, shortened to a few optimiser steps; numbers are not judged here."""
    from safetensors import safe_open

    from llava_lf.assembly.presets import load_preset
    from llava_lf.common.anyres import grid_pinpoints
    from llava_lf.demo.next_demo import GROUPS, NEXT_PRESET, format_next_result, run_next_demo
    from llava_lf.demo.pipeline import DemoConfig
    from llava_lf.evaluation.tasks.demo import QUESTION_TYPES

    out = tmp_path / "demo_next"
    config = DemoConfig(out=out, recipes=REPO / "yaml" / "demo", n_train=24, n_test=4,
                        train_overrides=(("max_steps", 1),))
    result = run_next_demo(config)

    held_out = [json.loads(line) for line in (out / "data" / "shapes_test_questions.jsonl").read_text().splitlines()]
    small = sum(question["small"] for question in held_out)
    assert 0 < small < len(held_out)
    for scores in (result.llava15, result.llava_next):  # small-shape questions apart, on the same questions
        assert (scores["all"]["all"].questions, scores["small"]["all"].questions,
                scores["large"]["all"].questions) == (len(held_out), small, len(held_out) - small)
    # The printed table: a row per question type and overall, a column block per group (n, 1.5, NeXT).
    lines = format_next_result(result).splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("question type"))
    header, rows = lines[start], lines[start + 2: lines.index("", start)]
    assert [block.split() for block in header.split("|")[1:]] == [[group, "n", "1.5", "NeXT"] for group in GROUPS]
    assert [row.split()[0] for row in rows] == [*QUESTION_TYPES, "all"]
    assert all(row.count("|") == len(GROUPS) for row in rows)
    assert all(chart.stat().st_size > 1000 for chart in result.charts)
    saved = json.loads((out / "results" / "next_demo_results.json").read_text())
    assert set(saved["llava_next"]) == set(saved["llava15"]) == set(GROUPS)

    # The NeXT export has AnyRes (the preset's grids in the tiny tower's tiles, a trained image_newline);
    # LLaVA-1.5's beside it has neither.
    next_config = json.loads((result.next_export / "config.json").read_text())
    tile = next_config["vision_config"]["image_size"]
    assert next_config["model_type"] == "llava_next"
    assert next_config["image_grid_pinpoints"] == grid_pinpoints(load_preset(NEXT_PRESET)["anyres_grids"], tile)
    with safe_open(result.next_export / "model.safetensors", "pt") as weights:
        assert any(key.endswith("image_newline") for key in weights.keys())
    assert json.loads((out / "export" / "config.json").read_text())["model_type"] == "llava"
