"""The converter writes the host's sharegpt form and rejects bad records with reasons (first cut)."""

from __future__ import annotations

import json

from PIL import Image


def _records(image_name: str) -> list[dict]:
    good = {"id": "a", "image": image_name, "conversations": [
        {"from": "human", "value": "What is this?\n<image>"}, {"from": "gpt", "value": "A shape."}]}
    return [
        good,
        {"id": "b", "conversations": [{"from": "gpt", "value": "hello"}, {"from": "human", "value": "Hi"},
                                      {"from": "gpt", "value": "Text only."}]},
        {"id": "a", "image": image_name, "conversations": good["conversations"]},  # duplicate id
        {"id": "c", "image": "missing.png", "conversations": good["conversations"]},
        {"id": "d", "image": "../escape.png", "conversations": good["conversations"]},
        {"id": "e", "image": image_name, "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                          {"from": "gpt", "value": "see <image>"}]},
        {"id": "f", "conversations": [{"from": "human", "value": "Q"}]},
    ]


def test_convert_file_writes_dataset_and_report(tmp_path):
    from llava_lf.convert import convert_file

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "x.png")
    src = tmp_path / "llava.json"
    src.write_text(json.dumps(_records("x.png")))
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))

    report = convert_file(src, images, out, "mine")

    assert (report.total, report.written) == (7, 2)
    assert dict(report.counts_by_reason()) == {"duplicate_id": 1, "missing_image": 1, "path_escape": 1,
                                               "image_in_answer": 1, "roles": 1}
    written = [json.loads(line) for line in (out / "mine.jsonl").read_text().splitlines()]
    assert written[0]["conversations"][0]["value"] == "<image>\nWhat is this?"
    assert (out / written[0]["images"][0]).resolve() == (images / "x.png").resolve()
    assert [turn["from"] for turn in written[1]["conversations"]] == ["human", "gpt"]  # leading gpt dropped
    rejected = [json.loads(line) for line in (out / "mine.rejected.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rejected] == [2, 3, 4, 5, 6]
    assert all(row["fix"] for row in rejected)
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "other.json"}
    assert info["mine"]["columns"] == {"messages": "conversations", "images": "images"}
