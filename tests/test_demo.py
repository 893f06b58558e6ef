"""The embedded default: the synthetic set is sound, and the whole pipeline runs through the host CLI."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
from conftest import REPO
from PIL import Image

from llava_lf.demo.shapes import make_scenes, questions
from llava_lf.evaluation.tasks.demo import ANSWER_SPACE, QUESTION_TYPES, normalise_answer, question_ids, score

pytestmark = pytest.mark.host


def test_scenes_are_unambiguous_and_answers_in_their_space():
    scenes = make_scenes(300, seed=1, size=48)
    rng = random.Random(0)
    for scene in scenes:
        assert 1 <= len(scene.shapes) <= 3
        assert len({s.kind for s in scene.shapes}) == len({s.color for s in scene.shapes}) == len(scene.shapes)
        for qa in questions(scene, rng):
            assert qa.answer in ANSWER_SPACE[qa.qtype]


def test_presence_answers_are_balanced_and_true():
    rng = random.Random(0)
    answers = []
    for scene in make_scenes(400, seed=2, size=48):
        qa = next(q for q in questions(scene, rng) if q.qtype == "presence")
        named = qa.question.removeprefix("Is there a ").removesuffix("?")
        assert (named in {s.name for s in scene.shapes}) == (qa.answer == "yes")
        answers.append(qa.answer)
    assert 0.4 < answers.count("yes") / len(answers) < 0.6


def test_written_files_are_consistent(demo_data):
    data, datasets = demo_data
    coco = json.loads((data.root / "instances_train.json").read_text())
    assert {a["image_id"] for a in coco["annotations"]} <= {i["id"] for i in coco["images"]}
    first = coco["images"][0]
    assert Image.open(data.image_dir / first["file_name"]).size == (first["width"], first["height"])
    held_out = [json.loads(line) for line in data.test_questions.read_text().splitlines()]
    train_images = {i["file_name"] for i in coco["images"]}
    assert not {q["image"] for q in held_out} & train_images
    assert {q["qtype"] for q in held_out} == set(QUESTION_TYPES)
    info = json.loads((datasets / "dataset_info.json").read_text())
    assert {"shapes_caption", "shapes_instruct"} <= set(info)


def test_chance_is_at_most_thirty_percent():
    questions_ = [{"qtype": qtype, "answer": "x", "image": f"{n}.png", "question": qtype}
                  for qtype in QUESTION_TYPES for n in range(10)]
    assert score(questions_, {})["all"].chance <= 0.30


@pytest.mark.parametrize(("text", "expected"), [("Red.", "red"), ("The circle", "circle"), ("two", "2"),
                                                ("top left!", "top left"), ("", "")])
def test_answer_normalisation(text, expected):
    assert normalise_answer(text) == expected


def test_scores_count_only_exact_answers():
    qs = [{"qtype": "color", "answer": "red", "image": "0.png", "question": "What colour is the circle?"},
          {"qtype": "color", "answer": "blue", "image": "0.png", "question": "What colour is the cross?"},
          {"qtype": "count", "answer": "2", "image": "1.png", "question": "How many shapes are there?"}]
    ids = question_ids(qs)  # answers are keyed by what identifies a question, not by its line
    result = score(qs, {ids[0]: "Red.", ids[1]: "red", ids[2]: "two"})
    assert (result["color"].correct, result["count"].correct, result["all"].correct) == (1, 1, 2)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The 1.5 demo, every step through the real CLI, shortened to a few optimiser steps (run once: the NeXT smoke
    takes its warmed language model)."""
    from llava_lf.demo.pipeline import DemoConfig, run_demo

    config = DemoConfig(out=tmp_path_factory.mktemp("demo") / "demo", recipes=REPO / "yaml" / "demo", n_train=40,
                        n_test=4, train_overrides=(("max_steps", 2),))
    return config, run_demo(config)


@pytest.mark.slow
def test_demo_pipeline_end_to_end_smoke(demo_run):
    """Every step through the real CLI, shortened to a few optimiser steps; numbers are not judged here."""
    config, result = demo_run
    assert result.after["all"].questions == 20
    assert (result.export_dir / "model.safetensors").is_file()
    assert (result.export_dir / "processor_config.json").is_file()
    assert all(chart.stat().st_size > 1000 for chart in result.charts)
    saved = json.loads((config.out / "results" / "demo_results.json").read_text())
    assert saved["after"]["all"]["questions"] == 20


@pytest.mark.slow
def test_next_demo_end_to_end_smoke(demo_run, tmp_path):
    """`llava-lf demo --next` shortened: stage 1 as 1.5, the upgrade, an AnyRes stage 2 beside 1.5's, both scored
    on the same questions with the small-shape ones apart; the 1.5 smoke's warm-up taken (the same text)."""
    from safetensors import safe_open

    from llava_lf.assembly.presets import load_preset
    from llava_lf.common.anyres import grid_pinpoints
    from llava_lf.demo.next_demo import GROUPS, NEXT_PRESET, format_next_result, run_next_demo

    out = tmp_path / "demo_next"
    config = replace(demo_run[0], out=out, warm_lm=demo_run[0].out / "models" / "llama_warm",
                     train_overrides=(("max_steps", 1),))
    result = run_next_demo(config)
    assert not (out / "logs" / "lm_warmup.log").exists()

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
