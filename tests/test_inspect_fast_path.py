"""inspect's fast path (`plain_batch`, `plain_seed`) gives the card the record-by-record reference path gives.

Files mix plain records (the fast path's) with every kind the converter rejects or reads one by one, in
random order, so batches are plain, mixed and bisected; each is inspected twice, with the fast path and
with it switched off, and the two cards must be equal, figure for figure (records: `helpers.inspect_records`).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers.inspect_records import (
    COUNT,
    HOSTILE_KINDS,
    PATHS,
    SEED,
    hostile_record,
    inspect_both,
    make_image_folder,
    mixed_records,
    pair,
    plain_record,
    write_records,
)

from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets, reading, split_scan


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("layout", ["indent", "jsonl"])
@pytest.mark.parametrize("mode", ["one_pass", "image_folder", "split"])
@pytest.mark.parametrize("template", ["llava_v1", "llava_plain"])
@pytest.mark.parametrize("name", ["llava_instruct_150k", "detail_23k", "mix"])
def test_fast_path_gives_the_reference_card(tmp_path, monkeypatch, image_folder, name, template, mode, layout):
    monkeypatch.setattr(reading, "CHUNK", 4096)  # small chunks: small batches, plain and mixed
    split = mode == "split"
    if split:
        monkeypatch.setattr(split_scan, "SPLIT_BYTES", 0)
    records = mixed_records(SEED + len(name) + len(layout), one_pass=not split)
    path = write_records(tmp_path / f"{name}.{'jsonl' if layout == 'jsonl' else 'json'}", records, layout)
    options = InspectOptions(image_folder=image_folder if mode == "image_folder" else None, template=template)
    fast, slow, calls = inspect_both(monkeypatch, path, options, split)
    card = fast["datasets"][0]
    assert card["composition"]["records"] == COUNT
    if template == "llava_v1":  # llava_plain's stage-1 checks are the reference path's alone
        assert calls.taken > 0 and calls.refused > 0, vars(calls)
    else:
        assert calls.taken == 0
    # The files hold what each figure needs, so equality is not the equality of two empty cards.
    assert card["problems"]["rejected"] > 20 and card["diversity"]["exact_duplicate_records"] > 5
    assert card["problems"]["refusal_records"] > 0 and card["problems"]["non_latin_records"] > 0
    if mode == "image_folder":
        assert card["images"]["missing"] > 0 and card["images"]["used_by_several_records"] > 0
    assert fast == slow


@pytest.mark.parametrize("mode", ["one_pass", "image_folder"])
def test_one_hostile_record_among_plain_ones(tmp_path, monkeypatch, image_folder, mode):
    """Each kind of hostile record alone among plain ones, so the fast path is asked about a batch it would
    take but for that one record."""
    monkeypatch.setattr(reading, "CHUNK", 4096)
    rng = random.Random(SEED)
    records: list = []
    for _ in range(3):
        for kind in range(HOSTILE_KINDS):
            records += [plain_record(rng, len(records) + n) for n in range(20)]
            records.append(hostile_record(rng, len(records), kind))
    if mode == "image_folder":  # plain runs need their images: only paths that exist
        existing = [path for path in PATHS if (image_folder / path).is_file()]
        for record in records:
            if isinstance(record, dict) and type(record.get("image")) is str and record["image"] in PATHS:
                record["image"] = existing[PATHS.index(record["image"]) % len(existing)]
    path = write_records(tmp_path / "mix.json", records, "indent")
    options = InspectOptions(image_folder=image_folder if mode == "image_folder" else None)
    fast, slow, calls = inspect_both(monkeypatch, path, options, split=False)
    assert calls.taken > 50 and calls.refused > 50, vars(calls)
    assert fast["datasets"][0]["problems"]["rejected"] > HOSTILE_KINDS
    assert fast == slow


@pytest.mark.parametrize("name", ["mix", "detail_23k"])
def test_an_id_suffix_before_a_trailing_newline(tmp_path, monkeypatch, name):
    records = [{"id": "r0-detail\n", "conversations": pair("What?")},
               {"id": "r1", "conversations": pair("Where?")}]
    path = write_records(tmp_path / f"{name}.json", records, "indent")
    fast, slow, _ = inspect_both(monkeypatch, path, InspectOptions(), split=False)
    assert fast["datasets"][0]["composition"] == slow["datasets"][0]["composition"]


def test_a_question_seen_once_in_each_part_of_a_split_keeps_its_text(tmp_path, monkeypatch):
    records = [{"id": f"r{n}", "conversations": pair("Shared?" if n in (0, 59) else f"Question {n}?", f"Answer {n}.")}
               for n in range(60)]
    path = write_records(tmp_path / "mix.json", records, "indent")
    one_pass = inspect_datasets([DatasetInput("data", path)], InspectOptions())
    monkeypatch.setattr(split_scan, "SPLIT_BYTES", 0)
    split = inspect_datasets([DatasetInput("data", path)], InspectOptions())
    assert split["datasets"][0]["diversity"]["repeated_questions"] == [{"text": "Shared?", "count": 2}]
    assert split == one_pass


