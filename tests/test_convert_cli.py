"""`llava-lf convert` / `llava-lf check` as a user runs them: exit codes, messages, atomic output. In process
(helpers/cli.py); test_convert_hostile and test_convert_fuzz run the console script itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.cli import llava_lf as _llava_lf
from PIL import Image


@pytest.fixture()
def workspace(tmp_path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), (0, 90, 200)).save(images / "a.png")
    records = [
        {"id": "ok", "image": "a.png", "conversations": [{"from": "human", "value": "What colour?\n<image>"},
                                                         {"from": "gpt", "value": "Blue."}]},
        {"id": "text", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
        {"id": "gone", "image": "b.png", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                           {"from": "gpt", "value": "A"}]},
    ]
    src = tmp_path / "llava.json"
    src.write_text(json.dumps(records, indent=2))
    return src, images


def test_convert_writes_dataset_and_exits_0_with_rejections(tmp_path, workspace):
    src, images = workspace
    out = tmp_path / "datasets"
    result = _llava_lf("convert", src, "--image-folder", images, "--out", out, "--name", "mine")
    assert result.returncode == 0, result.stderr
    assert "3 records, 2 written" in result.stdout and "rejected missing_image: 1" in result.stdout
    assert "fix:" in result.stdout and str(out / "mine.rejected.jsonl") in result.stdout
    assert len((out / "mine.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "mine.rejected.jsonl").read_text())["id"] == "gone"

    strict = _llava_lf("convert", src, "--image-folder", images, "--out", out, "--name", "mine", "--strict")
    assert strict.returncode == 1


def test_not_json_exits_2_naming_line_and_column_and_keeps_previous_output(tmp_path, workspace):
    src, images = workspace
    out = tmp_path / "datasets"
    assert _llava_lf("convert", src, "--image-folder", images, "--out", out, "--name", "mine").returncode == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    # Valid records first, then a broken one: the run fails after writing part of the output.
    broken = tmp_path / "broken.json"
    text = src.read_text()[:-2] + ',\n  {"id": "x", "conversations": [}\n]'
    broken.write_text(text)
    bad = text.index("[}") + 1
    line, column = text.count("\n", 0, bad) + 1, bad - text.rfind("\n", 0, bad)
    result = _llava_lf("convert", broken, "--image-folder", images, "--out", out, "--name", "mine")
    assert result.returncode == 2
    assert f"line {line}, column {column}: not valid JSON" in result.stderr, result.stderr
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # untouched, no temp files

    csv = tmp_path / "data.csv"
    csv.write_text("id,image\n")
    result = _llava_lf("check", csv, "--image-folder", images)
    assert result.returncode == 2 and "line 1, column 1" in result.stderr


def test_check_validates_without_writing_a_dataset(tmp_path, workspace):
    src, images = workspace
    report = tmp_path / "problems.jsonl"
    result = _llava_lf("check", src, "--image-folder", images, "--report", report)
    assert result.returncode == 1 and "2 valid, 1 rejected" in result.stdout
    assert [json.loads(line)["reason"] for line in report.read_text().splitlines()] == ["missing_image"]
    assert sorted(os.listdir(tmp_path)) == ["images", "llava.json", "problems.jsonl"]

    (images / "b.png").write_bytes((images / "a.png").read_bytes())
    clean = _llava_lf("check", src, "--image-folder", images, "--verify-images", "--workers", "1")
    assert clean.returncode == 0 and "3 valid, 0 rejected" in clean.stdout


def test_option_errors_exit_2_with_a_reason(tmp_path, workspace):
    src, images = workspace
    result = _llava_lf("check", src, "--image-folder", images, "--cutoff-len", "512")
    assert result.returncode == 2 and "--cutoff-len and --tokenizer go together" in result.stderr
    result = _llava_lf("check", tmp_path / "missing.json", "--image-folder", images)
    assert result.returncode == 2 and "missing.json" in result.stderr
