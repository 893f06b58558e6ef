"""inspect's fast reading and its two-process scan give exactly what the converter's reader and one pass give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_lf.data.convert.reader import iter_records
from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets, reading, split_scan


def _record(index: int) -> dict:
    turns = [{"from": "human", "value": f"<image>\nWhat is item {index % 7}?"},
             {"from": "gpt", "value": "I'm sorry, I cannot help." if index % 11 == 0 else f"It is {index % 5}."}]
    record = {"id": f"coco-{index}", "image": f"coco/{index % 13}.jpg", "conversations": turns}
    if index % 17 == 0:
        # a nested object of the records' own shape: the separator pattern also occurs inside this record
        record["meta"] = [{"id": "x", "n": 1}, {"id": "y", "n": 2}]
    if index % 19 == 0:
        del record["id"]  # written under its index
    return record


def _records(count: int) -> list[dict]:
    records = [_record(index) for index in range(count)]
    records[count - 3] = dict(records[3])  # an exact duplicate (and a duplicate id) far from its first
    records[count - 5]["id"] = "38"  # the index record 38 (which has no id) is written under
    records[count - 7]["conversations"] = [{"from": "gpt", "value": "alone"}]  # rejected: roles
    records[10]["conversations"] = "not turns"  # rejected: malformed, no figures
    return records


def _same_as_converter(path: Path) -> None:
    expected = list(iter_records(path))
    batches = list(reading.iter_batches(path))
    got = [(batch.start + position, batch.line(position), value)
           for batch in batches for position, value in enumerate(batch.values)]
    assert got == [(source.index, source.line, source.value) for source in expected]


@pytest.mark.parametrize("layout", ["indent2", "indent4_bom", "compact", "compact_spaced", "lines"])
def test_fast_reading_matches_the_converters_reader(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(reading, "CHUNK", 4096)  # many chunks, cuts retried at nested matches
    records = _records(400)
    path = tmp_path / "data.json"
    if layout == "lines":
        path.write_text("\n".join(json.dumps(record) for record in records) + "\n\n")
    elif layout.startswith("compact"):
        separators = (", ", ": ") if layout == "compact_spaced" else (",", ":")
        path.write_text(json.dumps(records, separators=separators))
    else:
        text = json.dumps(records, indent=4 if "indent4" in layout else 2)
        path.write_bytes(("\ufeff" if "bom" in layout else "").encode() + text.encode())
    _same_as_converter(path)


def test_records_orjson_refuses_are_read_by_the_converters_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "CHUNK", 4096)
    records = _records(200)
    text = json.dumps(records, indent=2)
    # a lone surrogate and an integer past 64 bits, half-way: the chunks before them stay on the fast path
    cut = text.index('"coco-120"')
    text = text[:cut] + '"\\ud800-120", "n": 123456789012345678901234567890' + text[cut + len('"coco-120"'):]
    path = tmp_path / "hostile.json"
    path.write_text(text)
    _same_as_converter(path)
    first = next(reading.iter_batches(path))
    assert first.text and first.start == 0 and len(first.values) < 120  # this one came from the fast path


@pytest.mark.parametrize("layout", ["indent2", "compact", "lines"])
def test_a_two_process_scan_gives_the_one_pass_figures(tmp_path, monkeypatch, layout):
    records = _records(600)
    path = tmp_path / "mix.json"
    if layout == "lines":
        path.write_text("\n".join(json.dumps(record) for record in records))
    else:
        path.write_text(json.dumps(records, indent=2 if layout == "indent2" else None))
    one_pass = inspect_datasets([DatasetInput("mix", path)], InspectOptions())
    monkeypatch.setattr(split_scan, "SPLIT_BYTES", 0)
    calls = []
    original = split_scan._newlines
    monkeypatch.setattr(split_scan, "_newlines", lambda *args: calls.append(args) or original(*args))
    split = inspect_datasets([DatasetInput("mix", path)], InspectOptions())
    assert calls, "the file was not split"
    assert split == one_pass
    card = one_pass["datasets"][0]
    readable = [json.dumps([record.get("image"), record["conversations"]]) for record in records
                if isinstance(record["conversations"], list)]
    assert card["diversity"]["exact_duplicate_records"] == len(readable) - len(set(readable)) > 0
    assert card["problems"]["reasons"] == {"duplicate_id": 2, "malformed": 1, "roles": 1}


def test_a_first_record_larger_than_a_chunk_stays_on_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "CHUNK", 1024)
    records = _records(50)
    records[0]["conversations"][1]["value"] = "long " * 2000  # 10 KB: ten chunks before the first separator
    path = tmp_path / "big_first.json"
    path.write_text(json.dumps(records, indent=2))
    _same_as_converter(path)
    assert next(reading.iter_batches(path)).text  # read by the fast path, not handed over


def test_a_split_given_up_leaves_the_one_pass_figures(tmp_path, monkeypatch):
    # Lines of a dataset `llava-lf convert` wrote in the second part: their images are checked, which only
    # one pass counts, so the split is given up after the first part ran; it must not be counted twice.
    lines = [{"id": f"r{index}", "images": [], "conversations": _record(index)["conversations"][:1] + [
        {"from": "gpt", "value": f"answer {index}"}]} for index in range(300)]
    for line in lines:
        line["conversations"][0]["value"] = line["conversations"][0]["value"].replace("<image>\n", "")
    lines[:200] = [_record(index) for index in range(200)]  # LLaVA records first: the first part reads them all
    path = tmp_path / "converted.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    one_pass = inspect_datasets([DatasetInput("c", path)], InspectOptions())
    monkeypatch.setattr(split_scan, "SPLIT_BYTES", 0)
    assert inspect_datasets([DatasetInput("c", path)], InspectOptions()) == one_pass
    assert one_pass["datasets"][0]["composition"]["records"] == 300
