"""The converter on real files and images: every LLaVA variant, every reject reason, nothing lost silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from llava_lf.data.convert import ConvertOptions, convert_file
from llava_lf.data.convert.report import Reason

pytestmark = pytest.mark.host

Q = "What is in the picture?"


def _pair(question: str, answer: str = "A red circle.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture()
def folder(tmp_path) -> Path:
    """An image folder laid out like LLaVA's, with real images (and one more outside it)."""
    images = tmp_path / "images"
    for name in ("coco/train2017/a.jpg", "coco/train2017/b.jpg", "gqa/images/c.png"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 16), (200, 30, 30)).save(images / name)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    return images


def _convert(tmp_path: Path, folder: Path, records: list, suffix: str = ".json", **options):
    src = tmp_path / f"src{suffix}"
    text = "\n".join(json.dumps(r) for r in records) if suffix == ".jsonl" else json.dumps(records, indent=2)
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "datasets"
    report = convert_file(src, folder, out, "mine", options=ConvertOptions(**options) if options else None)
    written = [json.loads(line) for line in (out / "mine.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "mine.rejected.jsonl").read_text().splitlines()]
    return report, written, rejected


VARIANTS = [
    {"id": "front", "image": "coco/train2017/a.jpg", "conversations": _pair(f"<image>\n{Q}")},
    {"id": "end", "image": "coco/train2017/a.jpg", "conversations": _pair(f"{Q}\n<image>")},  # ScienceQA style
    {"id": "text", "conversations": _pair("Tell me a joke.", "Why did the pixel blush?")},
    {"id": "list", "image": ["gqa/images/c.png"], "conversations": _pair(f"<image>\n{Q}")},
    {"id": "gpt-first", "image": "coco/train2017/b.jpg",
     "conversations": [{"from": "gpt", "value": "Hello!"}, *_pair(f"<image>\n{Q}")]},
    {"id": "multi", "image": "coco/train2017/a.jpg",
     "conversations": [*_pair(f"<image>\n{Q}"), *_pair("And its colour?", "Red.")]},
    {"id": "system", "image": "coco/train2017/b.jpg",
     "conversations": [{"from": "system", "value": "You are terse."}, *_pair(f"<image>\n{Q}")]},
    {"id": "unanswered", "conversations": [*_pair("Hi"), {"from": "human", "value": "Are you there?"}]},
    {"id": "two-images", "image": ["coco/train2017/a.jpg", "gqa/images/c.png"],
     "conversations": _pair("<image> and <image>: which is larger?")},
    {"id": 17, "image": "./coco//train2017/a.jpg", "conversations": _pair(f"<image>\n{Q}"), "model": ""},
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_every_variant_converts_as_llava_reads_it(tmp_path, folder, suffix):
    report, written, rejected = _convert(tmp_path, folder, VARIANTS, suffix)
    assert rejected == [] and report.written == len(VARIANTS)
    by_id = {record["id"]: record for record in written}
    out = tmp_path / "datasets"
    assert by_id["front"]["conversations"] == _pair(f"<image>\n{Q}")
    assert by_id["end"]["conversations"][0]["value"] == f"<image>\n{Q}"  # moved to the front, as LLaVA does
    assert by_id["text"]["images"] == [] and by_id["text"]["conversations"] == VARIANTS[2]["conversations"]
    assert by_id["gpt-first"]["conversations"] == _pair(f"<image>\n{Q}")  # leading gpt turn dropped
    assert len(by_id["multi"]["conversations"]) == 4
    assert by_id["system"]["conversations"][0] == {"from": "system", "value": "You are terse."}
    assert by_id["unanswered"]["conversations"] == _pair("Hi")
    assert by_id["two-images"]["conversations"][0]["value"] == "<image> and <image>: which is larger?"
    assert by_id["17"]["images"] == ["../images/coco/train2017/a.jpg"]  # normalised, relative to the dataset
    for record in written:  # every written image path opens from the dataset folder, where the host looks
        for image in record["images"]:
            assert (out / image).resolve().is_relative_to(folder.resolve())
    assert report.changes == {"image_moved_to_front": 1, "leading_gpt_dropped": 1, "trailing_human_dropped": 1}


def test_absolute_paths_option(tmp_path, folder):
    _, written, _ = _convert(tmp_path, folder, VARIANTS[:1], absolute_paths=True)
    assert written[0]["images"] == [str(folder.resolve() / "coco/train2017/a.jpg")]


def _reject_cases(tmp_path: Path, folder: Path) -> list[tuple[dict | object, str, str]]:
    """(record, expected reason, expected field): one or more per reason that needs no image decoding."""
    (folder / "coco" / "link-out.jpg").symlink_to(tmp_path / "outside.png")
    (folder / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    good = _pair(f"<image>\n{Q}")
    image = "coco/train2017/a.jpg"
    return [
        (["not", "an", "object"], "malformed", "<record>"),
        ({"id": "m1", "image": image}, "malformed", "conversations"),
        ({"id": "m2", "image": 5, "conversations": good}, "malformed", "image"),
        ({"id": "m3", "image": image, "conversations": [{"from": "human"}, good[1]]}, "malformed", "conversations[0]"),
        ({"id": "m4", "conversations": [{"from": "user", "value": "hi"}, good[1]]}, "malformed", "conversations[0].from"),
        ({"id": {"x": 1}, "conversations": _pair("hi")}, "malformed", "id"),
        ({"id": "r1", "conversations": [{"from": "human", "value": "hi"}]}, "roles", "conversations"),
        ({"id": "r2", "image": image, "conversations": [good[0], good[0], good[1], good[1]]}, "roles",
         "conversations[1].from"),
        ({"id": "e1", "image": image, "conversations": [good[0], {"from": "gpt", "value": "  "}]}, "empty_turn",
         "conversations[1].value"),
        ({"id": "p1", "image": image, "conversations": _pair(Q)}, "placeholder_count", "conversations"),
        ({"id": "p2", "conversations": good}, "placeholder_count", "conversations"),
        ({"id": "p3", "image": image, "conversations": _pair(f"<image><image>{Q}")}, "placeholder_count",
         "conversations"),
        ({"id": "a1", "image": image, "conversations": [*_pair("<image>\nHi", "Hi"), *_pair("?", "see <image>")]},
         "image_in_answer", "conversations[3].value"),
        ({"id": "front", "image": image, "conversations": good}, "duplicate_id", "id"),  # "front" comes first
        ({"id": "x1", "image": "/etc/passwd", "conversations": good}, "path_escape", "image"),
        ({"id": "x2", "image": "../outside.png", "conversations": good}, "path_escape", "image"),
        ({"id": "x3", "image": "coco/link-out.jpg", "conversations": good}, "path_escape", "image"),
        ({"id": "x4", "image": "linked-dir/outside.png", "conversations": good}, "path_escape", "image"),
        ({"id": "n1", "image": "coco/train2017/nope.jpg", "conversations": good}, "missing_image", "image"),
        ({"id": "n2", "image": ["coco/train2017/a.jpg", "coco/train2017"],
          "conversations": _pair("<image><image>")}, "missing_image", "image[1]"),
    ]


def test_every_structural_reject_reason_is_reported_with_field_and_fix(tmp_path, folder):
    cases = _reject_cases(tmp_path, folder)
    records = [VARIANTS[0], *(record for record, _, _ in cases)]
    report, written, rejected = _convert(tmp_path, folder, records)
    assert [record["id"] for record in written] == ["front"]
    assert report.total == len(records) and report.rejected == len(cases) == len(rejected)
    for row, (_, reason, field) in zip(rejected, cases):
        assert (row["reason"], row["field"]) == (reason, field), row
        assert row["message"] and row["fix"] and row["line"] >= 1
    assert [row["index"] for row in rejected] == list(range(1, len(records)))
    assert sum(report.reasons.values()) == len(cases)
    summary = report.summary()
    for reason in {reason for _, reason, _ in cases}:
        assert f"rejected {reason}: " in summary


def test_all_problems_of_a_record_are_listed(tmp_path, folder):
    record = {"id": "bad", "image": "missing.jpg", "conversations": _pair("no placeholder", "an <image> here")}
    _, _, rejected = _convert(tmp_path, folder, [VARIANTS[0], record])
    reasons = [rejected[0]["reason"]] + [problem["reason"] for problem in rejected[0]["also"]]
    assert sorted(reasons) == ["image_in_answer", "missing_image", "placeholder_count"]


def test_allow_symlinks_accepts_links_out(tmp_path, folder):
    (folder / "linked.png").symlink_to(tmp_path / "outside.png")
    record = {"id": "l", "image": "linked.png", "conversations": _pair(f"<image>\n{Q}")}
    _, written, rejected = _convert(tmp_path, folder, [record], allow_symlinks=True)
    assert rejected == [] and (tmp_path / "datasets" / written[0]["images"][0]).is_file()


def test_llava_plain_takes_one_image_and_one_pair(tmp_path, folder):
    records = [VARIANTS[1], VARIANTS[2], VARIANTS[5], VARIANTS[6]]  # ok, text-only, multi-turn, system
    _, written, rejected = _convert(tmp_path, folder, records, template="llava_plain")
    assert [record["id"] for record in written] == ["end"]
    assert [row["reason"] for row in rejected] == ["plain_shape"] * 3


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb in miniature."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_verify_images_rejects_broken_truncated_and_oversized_files(tmp_path, folder):
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    noise.save(folder / "full.jpg")
    noise.save(folder / "cut.jpg")
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("this is not an image")
    _png_header_only(folder / "bomb.png", 100_000, 100_000)
    Image.new("RGB", (300, 300)).save(folder / "big.png")
    names = ["full.jpg", "cut.jpg", "text.jpg", "bomb.png", "big.png"]
    records = [{"id": name, "image": name, "conversations": _pair(f"<image>\n{Q}")} for name in names]
    records.append(VARIANTS[2])  # text-only records pass through the verifier in order

    report, written, rejected = _convert(tmp_path, folder, records, verify_images=True, max_pixels=250 * 250,
                                         workers=2)
    assert [record["id"] for record in written] == ["full.jpg", "text"]
    assert {row["id"]: row["reason"] for row in rejected} == {
        "cut.jpg": "image_truncated", "text.jpg": "image_undecodable", "bomb.png": "image_too_large",
        "big.png": "image_too_large"}
    assert "10,000,000,000 pixels" in next(row["message"] for row in rejected if row["id"] == "bomb.png")
    # Without --verify-images the same files pass: only existence is checked.
    report, written, _ = _convert(tmp_path, folder, records)
    assert report.rejected == 0 and len(written) == len(records)


def test_reconversion_replaces_its_entry_and_keeps_the_others(tmp_path, folder):
    out = tmp_path / "datasets"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    _convert(tmp_path, folder, VARIANTS[:2])
    _convert(tmp_path, folder, VARIANTS[:3])
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "other.json"}
    assert info["mine"]["file_name"] == "mine.jsonl" and info["mine"]["columns"]["images"] == "images"
    assert len((out / "mine.jsonl").read_text().splitlines()) == 3
    # No leftovers; the lock file stays (removing it would race with the next run that takes it).
    assert sorted(os.listdir(out)) == [".dataset_info.json.lock", "dataset_info.json", "mine.jsonl",
                                       "mine.rejected.jsonl"]


def test_text_only_records_first_still_load_with_datasets(tmp_path, folder):
    """The host's JSON loader types columns from the first ~10 MB; an all-text-only first block broke it."""
    import datasets

    long_answer = "word " * 400
    records = [{"id": f"t{i}", "conversations": _pair("Say something long.", long_answer)} for i in range(6000)]
    records.append({"id": "img", "image": "coco/train2017/a.jpg", "conversations": _pair(f"<image>\n{Q}")})
    report, written, _ = _convert(tmp_path, folder, records)
    assert written[0]["id"] == "img" and [r["id"] for r in written[1:4]] == ["t0", "t1", "t2"]
    assert report.changes["moved_to_front_for_schema"] == 1
    assert (tmp_path / "datasets" / "mine.jsonl").stat().st_size > 11 << 20  # more than one loader block
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "datasets" / "mine.jsonl"), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == len(records) and loaded[0]["images"] == written[0]["images"]


def _one_input_per_reason(tmp_path: Path, folder: Path, tokenizer: Path) -> dict[str, tuple[object, dict]]:
    """reason -> (a record that must be rejected for it, the options that check it)."""
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    noise.save(folder / "cut.jpg")
    (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:300])
    (folder / "text.jpg").write_text("this is not an image")
    _png_header_only(folder / "bomb.png", 100_000, 100_000)
    verify = {"verify_images": True, "workers": 1}
    cases = {reason: (record, {}) for record, reason, _ in _reject_cases(tmp_path, folder)}
    cases["plain_shape"] = (VARIANTS[2], {"template": "llava_plain"})
    cases["image_undecodable"] = ({"id": "u", "image": "text.jpg", "conversations": _pair(f"<image>\n{Q}")}, verify)
    cases["image_truncated"] = ({"id": "t", "image": "cut.jpg", "conversations": _pair(f"<image>\n{Q}")}, verify)
    cases["image_too_large"] = ({"id": "b", "image": "bomb.png", "conversations": _pair(f"<image>\n{Q}")}, verify)
    cases["too_long"] = ({"id": "l", "image": "coco/train2017/a.jpg", "conversations": _pair("<image>\n" + Q * 40)},
                         {"cutoff_len": 150, "tokenizer": tokenizer})  # the good record takes 64
    return cases


@pytest.mark.parametrize("reason", Reason.__args__)
def test_each_reason_is_produced_by_some_input(tmp_path, folder, tiny_llava, reason):
    """A reason no input produces is dead code or an untested path: each must come out of a real conversion."""
    cases = _one_input_per_reason(tmp_path, folder, tiny_llava)
    assert reason in cases, f"no input in this test produces {reason!r}: add one"
    record, options = cases[reason]
    _, written, rejected = _convert(tmp_path, folder, [VARIANTS[0], record], **options)
    assert [row["reason"] for row in rejected] == [reason], rejected
    assert rejected[0]["record"] == record  # the record itself is kept, to fix and convert again
    assert [row["id"] for row in written] == ["front"]


def test_seen_ids_remembers_every_id_across_growth():
    from llava_lf.data.convert.ids import SeenIds

    seen = SeenIds(capacity=8)
    ids = [f"{n:012d}" for n in range(50_000)] + list(map(str, range(1000)))  # "0".."999" differ from padded ones
    assert all(seen.add(record_id) for record_id in ids)
    assert len(seen) == len(ids)
    assert not any(seen.add(record_id) for record_id in ids[::7])
    assert seen.add("never-seen")
