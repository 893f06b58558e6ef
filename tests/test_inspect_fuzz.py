"""Hostile and fuzzed records through the real `llava-lf inspect` command: it never crashes, counts every
record, and gives the same card with the fast path on and off."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers.inspect_records import (
    COUNT,
    PATHS,
    REFUSALS,
    SEED,
    SPACES,
    inspect_both,
    make_image_folder,
    pair,
    plain_record,
    write_records,
)

from llava_lf.cli import run
from llava_lf.data.inspect import InspectOptions, reading, scan, split_scan


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


_CHARS = ("abcXYZ019 .,!?'\"\\/-_:{}[]<>" + "".join(SPACES) + "\x00\x01\x7f\x80\x85\xa0\xad" + "狗猫日本語ÜßİıſΣς"
          + "\u0301\u200b\u200d\u2028\ufeff\uffff" + "😀👍🏽🇯🇵")
_ROLES = ["human", "gpt", "system", "Human", "user", "", 1, 0, None, True, 2.5, ["human"], {"x": 1}]


def _random_text(rng: random.Random, surrogates: bool) -> str:
    pieces = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.1:
            pieces.append("<image>")
        elif roll < 0.15 and surrogates:
            pieces.append(chr(rng.randint(0xD800, 0xDFFF)))
        elif roll < 0.25:
            pieces.append(rng.choice(REFUSALS))
        elif roll < 0.3:
            pieces.append(chr(rng.randint(0x80, 0x2FFFF)) if rng.random() < 0.5 else chr(rng.randint(0, 0x7F)))
        else:
            pieces.append("".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 6))))
    return "".join(pieces)


def _random_value(rng: random.Random, surrogates: bool, depth: int = 0) -> object:
    roll = rng.randrange(10 if depth < 2 else 8)
    if roll == 0:
        return None
    if roll == 1:
        return rng.choice([True, False])
    if roll == 2:
        return rng.choice([0, -1, 7, 2**63 - 1, -(2**63), 2**64, 10**30, rng.randint(-1000, 1000)])
    if roll == 3:
        return rng.choice([0.0, -0.0, 1.5, 1e300, float("nan"), float("inf"), float("-inf")])
    if roll in (4, 5, 6, 7):
        return _random_text(rng, surrogates)
    if roll == 8:
        return [_random_value(rng, surrogates, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_random_text(rng, False) or "k": _random_value(rng, surrogates, depth + 1) for _ in range(rng.randint(0, 3))}


def _fuzz_record(rng: random.Random, index: int, surrogates: bool) -> object:
    if rng.random() < 0.05:
        return _random_value(rng, surrogates)
    def maybe(plausible):  # a plausible value, or any JSON value
        return plausible() if rng.random() < 0.6 else _random_value(rng, surrogates)

    record: dict = {}
    if rng.random() < 0.8:
        record["id"] = maybe(lambda: rng.choice([f"f{index}", index, f"x{index}-detail", str(rng.randrange(COUNT))]))
    if rng.random() < 0.6:
        record["image"] = maybe(lambda: rng.choice(PATHS + [[rng.choice(PATHS)], [], ""]))
    if rng.random() < 0.05:
        record["images"] = maybe(lambda: [rng.choice(PATHS)])
    for key in ("source", "type", _random_text(rng, False) or "extra"):
        if rng.random() < 0.1:
            record[key] = _random_value(rng, surrogates)

    def turn(position: int) -> object:
        if rng.random() < 0.05:
            return _random_value(rng, surrogates)
        role = ("human", "gpt")[position % 2] if rng.random() < 0.8 else rng.choice(_ROLES)
        made = {"from": role, "value": _random_text(rng, surrogates) if rng.random() < 0.9
                else _random_value(rng, surrogates)}
        if rng.random() < 0.05:
            del made[rng.choice(["from", "value"])]
        return made

    record["conversations"] = maybe(lambda: [turn(position) for position in range(rng.randint(0, 7))])
    return record


def _fuzz_file(path: Path, seed: int, surrogates: bool, count: int = 400) -> list:
    rng = random.Random(seed)
    records = [plain_record(rng, 0), plain_record(rng, 1)]
    while len(records) < count:  # runs of plain records, so some batches (after bisection) are all plain
        records += [plain_record(rng, len(records) + n) for n in range(rng.choice([0, 5, 30, 60]))]
        records += [_fuzz_record(rng, len(records) + n, surrogates) for n in range(rng.randint(1, 30))]
    records = records[:count]
    # An integer role, which crashed inspect before (its repr stands for it in the figures).
    records[count // 2] = {"id": "int-role", "conversations": [{"from": 1, "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]}
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return records


def _cli_card(path: Path, out: Path, *extra: str) -> dict:
    code = run(["inspect", str(path), "--out", str(out), *extra])
    assert code == 0
    return json.loads((out / "card.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("surrogates", [
    False,
    True,
])
def test_hostile_records_through_the_command(tmp_path, monkeypatch, image_folder, surrogates):
    monkeypatch.setattr(reading, "CHUNK", 4096)
    path = tmp_path / "mix.json"
    records = _fuzz_file(path, SEED + surrogates, surrogates)
    taken = []
    real = scan.plain_batch
    monkeypatch.setattr(scan, "plain_batch", lambda *args: taken.append(result := real(*args)) or result)
    for extra in ((), ("--image-folder", str(image_folder))):
        fast = _cli_card(path, tmp_path / "fast", *extra)
        with monkeypatch.context() as off:
            off.setattr(scan, "plain_batch", lambda *args: None)
            off.setattr(split_scan, "plain_seed", lambda *args: None)
            slow = _cli_card(path, tmp_path / "slow", *extra)
        [card] = fast["datasets"]
        assert card["composition"]["records"] == len(records)
        assert card["problems"]["reasons"].get("malformed", 0) > 0
        assert fast == slow
    assert any(result is not None for result in taken)


@pytest.mark.parametrize("mode", ["one_pass", "image_folder"])
def test_hostile_records_with_lone_surrogates_in_process(tmp_path, monkeypatch, image_folder, mode):
    """The fast and the reference path agree on surrogates everywhere (in process: the figures, not the files)."""
    monkeypatch.setattr(reading, "CHUNK", 4096)
    path = tmp_path / "mix.json"
    records = _fuzz_file(path, SEED + 7, surrogates=True)
    options = InspectOptions(image_folder=image_folder if mode == "image_folder" else None)
    fast, slow, calls = inspect_both(monkeypatch, path, options, split=False)
    assert fast["datasets"][0]["composition"]["records"] == len(records)
    assert calls.taken > 0 or mode == "image_folder"  # a third of the paths are missing: few spans are plain
    assert fast == slow


@pytest.mark.parametrize("role", [1, 0, None, True, 2.5, ["human"], {"from": "human"}])
def test_a_role_that_is_not_text(tmp_path, monkeypatch, role):
    records = [{"id": "a", "conversations": pair("Hi?")},
               {"id": "b", "conversations": [{"from": role, "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]},
               {"id": "c", "conversations": pair("Hi?")}]
    path = write_records(tmp_path / "mix.json", records, "indent")
    card = _cli_card(path, tmp_path / "out")["datasets"][0]
    assert card["composition"]["records"] == 3
    assert card["problems"]["reasons"] == {"malformed": 1}
    assert card["diversity"]["exact_duplicate_records"] == 1  # a and c; b's turns differ by their role
    fast, slow, _ = inspect_both(monkeypatch, path, InspectOptions(), split=False)
    assert fast == slow


@pytest.mark.parametrize("record", [
    {"id": "q", "conversations": [{"from": "human", "value": "\ud800 hello"}, {"from": "gpt", "value": "x"}]},
    {"id": "s", "source": "\udc00src", "conversations": pair("Hi?")},
], ids=["question", "source"])
def test_a_lone_surrogate_does_not_crash_the_command(tmp_path, record):
    path = write_records(tmp_path / "mix.json", [record], "indent")
    assert _cli_card(path, tmp_path / "out")["datasets"][0]["composition"]["records"] == 1
