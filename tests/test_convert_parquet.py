"""Parquet shards in LLaVA-NeXT-Data's layout -> a dataset: every row written or rejected with its reason, inline
images stored once each by content, path-only images looked up under --image-folder, `data_source` carried; a
kill -9 in the middle and a rerun give what one clean run gives (that the result trains with the host's CLI:
tests/test_convert_train.py).

The shard set is written with pyarrow as `datasets` writes NeXT-Data (id, conversations [{from, value}],
data_source, image = {bytes, path}), in two shards: one with one image struct per row (several row groups), one
with a list of them (several images per row), so both layouts and the crossing of shards are read.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN
from helpers.cli import llava_lf
from helpers.parquet_shards import EXPECTED, turns, write_shards
from PIL import Image


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet")
    data, images = write_shards(root)
    out = root / "datasets"
    done = llava_lf("convert", data / "train-*.parquet", "--image-folder", images, "--out", out, "--name", "next")
    assert done.returncode == 0, done.stdout + done.stderr
    return root, data, images, out, done.stdout


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_row_is_written_or_rejected_with_its_reason(converted):
    root, data, images, out, summary = converted
    written = {record["id"]: record for record in _read(out / "next.jsonl")}
    rejected = _read(out / "next.rejected.jsonl")
    assert set(written) == {rid for rid, reason in EXPECTED.items() if reason is None}
    assert sorted((row["id"], row["reason"]) for row in rejected) == sorted(
        (rid.split("#")[0], reason) for rid, reason in EXPECTED.items() if reason is not None)
    assert f"{len(EXPECTED)} records, {len(written)} written" in summary
    for row in rejected:  # where it lies, and its image bytes as their size only
        assert row["at"].startswith("train-0000") and " row " in row["at"] and row["fix"]
        assert len(json.dumps(row)) < 1500
    assert {record["data_source"] for record in written.values()} == {"coco", "ocr", "sharegpt", "vg", "multi"}
    assert written["text-0"]["images"] == [] and len(written["two-1"]["images"]) == 2


def test_inline_images_are_stored_once_each_by_content(converted):
    root, data, images, out, summary = converted
    written = _read(out / "next.jsonl")
    inline = [path for record in written for path in record["images"] if path.startswith("images/")]
    stored = sorted(p for p in (out / "images").rglob("*") if p.is_file())
    assert sorted({out / path for path in inline}) == stored  # every stored file is used, every use is stored
    for path in stored:
        assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()[:32] and path.parent.name == path.stem[:2]
        with Image.open(path) as image:
            assert path.suffix == {"JPEG": ".jpg", "PNG": ".png"}[image.format]
    duplicates = len(inline) - len(stored)
    assert duplicates == 7  # dup-0..4, and two-dup's two images
    assert f"images: {len(stored)} distinct inline images stored in {out / 'images'}, {duplicates} duplicate" in summary
    by_id = {record["id"]: record for record in written}
    assert by_id["dup-3"]["images"] == by_id["jpg-3"]["images"]
    path_only = by_id["path-1"]["images"][0]
    assert (out / path_only).resolve() == (images / "coco" / "1.jpg").resolve()  # looked up, not copied


def test_path_only_rows_need_the_image_folder_and_templates_of_next_are_taken(converted, tmp_path):
    root, data, images, out, summary = converted
    done = llava_lf("convert", data, "--out", tmp_path / "out", "--name", "next", "--template", "llava_chatml_direct")
    assert done.returncode == 0, done.stdout + done.stderr
    rejected = {row["id"]: row for row in _read(tmp_path / "out" / "next.rejected.jsonl")}
    assert {f"path-{n}" for n in range(3)} <= set(rejected)
    assert "--image-folder" in rejected["path-0"]["fix"]
    check = llava_lf("check", *sorted(data.glob("*.parquet")), "--image-folder", images)  # as a shell expands a glob
    assert check.returncode == 1 and f"{len(EXPECTED)} records" in check.stdout
    assert not any((tmp_path / "out" / "images").glob("*/.llava-lf-tmp.*"))


def test_verify_images_decodes_each_image_before_it_is_stored(converted, tmp_path):
    root, data, images, out, summary = converted
    done = llava_lf("convert", data, "--image-folder", images, "--out", tmp_path / "out", "--name", "next",
                    "--verify-images", "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    rejected = {row["id"]: row["reason"] for row in _read(tmp_path / "out" / "next.rejected.jsonl")}
    assert rejected["cut-body"] == "image_truncated"
    written = _read(tmp_path / "out" / "next.jsonl")
    assert {record["id"] for record in written} == {record["id"] for record in _read(out / "next.jsonl")} - {"cut-body"}
    named = {tmp_path / "out" / path for record in written for path in record["images"] if path.startswith("images/")}
    assert {path for path in (tmp_path / "out" / "images").rglob("*") if path.is_file()} == named  # no orphan


def test_a_broken_shard_or_a_json_file_without_image_folder_stops_before_writing(converted, tmp_path):
    root, data, images, out, summary = converted
    shards = tmp_path / "shards"
    shards.mkdir()
    good = data / "train-00001-of-00003.parquet"
    (shards / "a.parquet").write_bytes(good.read_bytes())
    (shards / "b.parquet").write_bytes(good.read_bytes()[:-100])  # a cut download: no footer
    done = llava_lf("convert", shards, "--out", tmp_path / "out", "--name", "next")
    assert done.returncode == 2 and "b.parquet: not a readable parquet file" in done.stderr
    assert not (tmp_path / "out").exists()
    src = tmp_path / "llava.json"
    src.write_text(json.dumps([{"id": "a", "conversations": turns("Q?", "A.", images=0)}]))
    done = llava_lf("convert", src, "--out", tmp_path / "out", "--name", "llava")
    assert done.returncode == 2 and "needs --image-folder" in done.stderr


# Runs the real command line, killing itself with SIGKILL at the K-th os.replace (mid image store).
WRAPPER = """
import os, signal, sys
from llava_lf.cli import main
k, real, seen = int(sys.argv[1]), os.replace, [0]
def patched(*args, **kwargs):
    seen[0] += 1
    if seen[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
os.replace = patched
main(sys.argv[2:])
"""


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != ".dataset_info.json.lock"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_kill_mid_run_and_a_rerun_give_what_one_clean_run_gives(converted, tmp_path):
    root, data, images, clean, _ = converted
    out = root / "killed"  # beside the clean output: the same relative path to the image folder
    argv = ["convert", str(data / "train-*.parquet"), "--image-folder", str(images), "--out", str(out),
            "--name", "next"]
    killed = subprocess.run([sys.executable, "-c", WRAPPER, "9", *argv], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = _tree(out)
    assert "next.jsonl" not in left and any(name.startswith("images/.llava-lf-tmp.") for name in left)
    assert 0 < sum(name.startswith("images/") for name in left) < len(_tree(clean / "images"))
    rerun = subprocess.run([str(BIN / "llava-lf"), *argv], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "left by an interrupted run" in rerun.stdout
    assert _tree(out) == _tree(clean)


def test_the_data_card_counts_sources_by_data_source(converted, tmp_path):
    root, data, images, out, _ = converted
    done = llava_lf("inspect", out / "next.jsonl", "--out", tmp_path / "card")
    assert done.returncode == 0, done.stdout + done.stderr
    [card] = json.loads((tmp_path / "card" / "card.json").read_text())["datasets"]
    written = _read(out / "next.jsonl")
    expected = {source: sum(record["data_source"] == source for record in written) for source in
                {record["data_source"] for record in written}}
    assert card["composition"]["sources"] == expected
