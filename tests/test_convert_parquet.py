"""Parquet shards in LLaVA-NeXT-Data's layout -> a dataset: every row written or rejected with its reason, inline
images stored once each by content, path-only images looked up under --image-folder, `data_source` carried; a
kill -9 in the middle and a rerun give what one clean run gives; the result trains with the real llamafactory-cli.

The shard set is written with pyarrow as `datasets` writes NeXT-Data (id, conversations [{from, value}],
data_source, image = {bytes, path}), in two shards: one with one image struct per row (several row groups), one
with a list of them (several images per row), so both layouts and the crossing of shards are read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import BIN
from helpers.cli import llava_lf
from PIL import Image

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24 + seed % 5, 16), (seed * 37 % 256, seed * 11 % 256, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 20 + seed % 3), (10, seed * 53 % 256, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A PNG whose header claims 40,000 x 40,000 pixels (1.6 G, over the default limit); no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _turns(question: str, answer: str, images: int = 1) -> list[dict]:
    return [{"from": "human", "value": "<image>\n" * images + question}, {"from": "gpt", "value": answer}]


# id -> (the reason it is rejected, or None when it is written)
EXPECTED: dict[str, str | None] = {}


def _single_rows(images_dir: Path) -> list[dict]:
    """Shard 1: one image struct per row (NeXT-Data's layout)."""
    rows = []

    def add(rid, conversations, image, source="coco", reason=None):
        EXPECTED[rid] = reason
        rows.append({"id": rid, "conversations": conversations, "data_source": source, "image": image})

    for n in range(12):
        add(f"jpg-{n}", _turns(f"What colour is square {n}?", f"Colour {n}."), {"bytes": _jpeg(n), "path": f"{n}.jpg"})
    for n in range(4):
        add(f"png-{n}", _turns(f"Describe picture {n}.", f"A bar {n}."), {"bytes": _png(n), "path": None},
            source="ocr")
    for n in range(5):  # the same bytes as jpg-0..4, under other ids: stored once
        add(f"dup-{n}", _turns(f"Again, square {n}?", "The same."), {"bytes": _jpeg(n), "path": f"copy/{n}.jpg"})
    for n in range(4):
        add(f"text-{n}", [{"from": "human", "value": f"Say {n}."}, {"from": "gpt", "value": f"{n}."}], None,
            source="sharegpt")
    (images_dir / "coco").mkdir(parents=True)
    for n in range(3):  # path only: looked up under --image-folder
        (images_dir / "coco" / f"{n}.jpg").write_bytes(_jpeg(100 + n))
        add(f"path-{n}", _turns("Where is it?", "Here."), {"bytes": None, "path": f"coco/{n}.jpg"}, source="vg")
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48).save(noisy, "JPEG")
    add("cut-body", _turns("Cut?", "Yes."), {"bytes": noisy.getvalue()[:-500], "path": None})  # decoding finds it
    add("json-turns", json.dumps(_turns("Turns stored as JSON text?", "Yes.")), {"bytes": _jpeg(50), "path": None})
    # hostile rows: each rejected alone, with its reason
    add("no-bytes", _turns("Q?", "A."), {"bytes": None, "path": None}, reason="missing_image")
    add("empty-bytes", _turns("Q?", "A."), {"bytes": b"", "path": None}, reason="missing_image")
    add("garbage", _turns("Q?", "A."), {"bytes": os.urandom(3000), "path": "x.jpg"}, reason="image_undecodable")
    add("cut-header", _turns("Q?", "A."), {"bytes": _jpeg(65)[:200], "path": None}, reason="image_undecodable")
    add("eps", _turns("Q?", "A."), {"bytes": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "path": None},
        reason="image_undecodable")
    add("bomb", _turns("Q?", "A."), {"bytes": _bomb_png(), "path": None}, reason="image_too_large")
    add("path-missing", _turns("Q?", "A."), {"bytes": None, "path": "coco/none.jpg"}, reason="missing_image")
    add("path-escape", _turns("Q?", "A."), {"bytes": None, "path": "../outside.jpg"}, reason="path_escape")
    add("no-turns", None, {"bytes": _jpeg(60), "path": None}, reason="malformed")
    add("bad-role", [{"from": "user", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}],
        {"bytes": _jpeg(61), "path": None}, reason="malformed")
    add("no-placeholder", [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}],
        {"bytes": _jpeg(62), "path": None}, reason="placeholder_count")
    add("bad-json-turns", "[{not json", {"bytes": _jpeg(63), "path": None}, reason="malformed")
    EXPECTED["jpg-0#2"] = "duplicate_id"
    rows.append({"id": "jpg-0", "conversations": _turns("Q?", "A."), "data_source": "coco",
                 "image": {"bytes": _jpeg(64), "path": None}})
    return rows


def _multi_rows() -> list[dict]:
    """Shard 2: a list of image structs per row (several images per row)."""
    rows = []

    def add(rid, conversations, images, reason=None):
        EXPECTED[rid] = reason
        rows.append({"id": rid, "conversations": conversations, "data_source": "multi", "image": images})

    for n in range(3):
        add(f"two-{n}", _turns(f"Compare pair {n}.", "They differ.", images=2),
            [{"bytes": _jpeg(200 + n), "path": None}, {"bytes": _png(200 + n), "path": None}])
    add("two-dup", _turns("Compare again.", "Same pair.", images=2),
        [{"bytes": _jpeg(200), "path": None}, {"bytes": _jpeg(1), "path": None}])  # both stored already
    add("two-none", _turns("Q?", "A.", images=2), [{"bytes": _jpeg(210), "path": None}, None],
        reason="missing_image")
    add("multi-text", [{"from": "human", "value": "Hi."}, {"from": "gpt", "value": "Hello."}], [])
    return rows


def write_shards(root: Path) -> tuple[Path, Path]:
    """The shard folder (data/train-0000{0,1}-of-00002.parquet) and the image folder for path-only rows."""
    EXPECTED.clear()
    data, images = root / "data", root / "images"
    data.mkdir(parents=True)
    single = pa.schema([("id", pa.string()), ("conversations", pa.list_(TURN)), ("data_source", pa.string()),
                        ("image", IMAGE)])
    rows = _single_rows(images)
    as_text = {"json-turns", "bad-json-turns"}  # turns stored as JSON text: a third shard, typed so
    listed = [row for row in rows if row["id"] not in as_text]
    pq.write_table(pa.Table.from_pylist(listed, schema=single), data / "train-00000-of-00003.parquet",
                   row_group_size=7)  # several row groups
    multi = pa.schema([("id", pa.string()), ("conversations", pa.list_(TURN)), ("data_source", pa.string()),
                       ("image", pa.list_(IMAGE))])
    pq.write_table(pa.Table.from_pylist(_multi_rows(), schema=multi), data / "train-00001-of-00003.parquet")
    text = pa.schema([("id", pa.string()), ("conversations", pa.string()), ("data_source", pa.string()),
                      ("image", IMAGE)])
    pq.write_table(pa.Table.from_pylist([row for row in rows if row["id"] in as_text], schema=text),
                   data / "train-00002-of-00003.parquet")
    return data, images


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
    src.write_text(json.dumps([{"id": "a", "conversations": _turns("Q?", "A.", images=0)}]))
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


@pytest.mark.slow
@pytest.mark.host
@pytest.mark.timeout(600)
def test_the_converted_shards_train_with_llamafactory_cli(converted, tiny_llava, tmp_path):
    """One short run of the real host on every kept row: single, multi-image, path-only and text-only together.
    Converted with --verify-images: the set holds a JPEG cut in its pixel data, which only decoding finds and
    which the host would stop on."""
    from helpers.host_cli import cli

    import yaml

    root, data, images, _, _ = converted
    out = tmp_path / "datasets"
    done = llava_lf("convert", data, "--image-folder", images, "--out", out, "--name", "next", "--verify-images",
                    "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = len(_read(out / "next.jsonl"))
    config = {
        "model_name_or_path": str(tiny_llava), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "next", "dataset_dir": str(out), "template": "llava_v1",
        "cutoff_len": 1024, "preprocessing_num_workers": 1, "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": kept, "max_steps": 1, "learning_rate": 1.0e-3, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none",
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    cli("train", path, {}, tmp_path / "train.log")
    log = (tmp_path / "train.log").read_text()
    assert f"Num examples = {kept}" in log and "Total optimization steps = 1" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
