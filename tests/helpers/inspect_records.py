"""LLaVA records for inspect's fast-path tests: plain ones, every hostile kind, and the two inspections
(fast path on and off) whose cards must be equal."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

from PIL import Image

from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets, scan, split_scan
from llava_lf.data.inspect.stats import DatasetStats

SEED = 20240607
COUNT = 400

WORDS = ["the", "bus", "red", "Sign", "狗", "猫が座っている", "café", "naïve", "😀", "👍🏽", "İstanbul", "ſorry",
         "Straße", "x", "\u200b", "a-b", "3.5", "日本語のテキスト", "Ünïcödé", "e\u0301", "zero\u200dwidth"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e",
          "\x1f", "\x85", "\u2009", "\x0b", "\x0c"]
REFUSALS = ["I'm sorry, I cannot tell.", "As an AI, I do not know.", "I cannot help with that.", "I’m unable to say.",
            "I'm unable to see the image.", "i CAN'T ASSIST here", "I am sorry but no.", "As a language model: no",
            "I'm ſorry, as a rule no."]
DETAIL = ["Describe the following image in detail", "What is this photo about?", "Offer a thorough analysis of the image."]
BLANKS = ["", " ", "\u3000\u00a0", "\n\t", "\x1c\x1f", "\u2028"]
FOLDERS = ["coco/train2017/{k:012d}.jpg", "{k:05d}/{k}.png", "img{k}.jpg", "gqa/images/{k}.jpg", "ocr_vqa/images/{k}X.jpg",
           "vg/VG_100K_2/{k}.jpg", "sub/dir/deep/{k}.png"]
PATHS = [pattern.format(k=k) for k in range(12) for pattern in FOLDERS]



def _text(rng: random.Random, words: int | None = None) -> str:
    n = words if words is not None else rng.randint(1, 9)
    parts = [rng.choice(WORDS) + rng.choice(SPACES) for _ in range(n)]
    text = "".join(parts)
    if rng.random() < 0.5:
        text = text.rstrip()
    if rng.random() < 0.2:
        text = rng.choice(SPACES) + text
    return text if text.strip() else "word"


def _with_placeholder(rng: random.Random, question: str) -> str:
    where = rng.choice(["front", "end", "mid", "alone", "glued"])
    if where == "front":
        return "<image>\n" + question
    if where == "end":
        return question + "\n<image>"
    if where == "alone":
        return "<image>"
    if where == "glued":
        return "foo<image>bar " + question
    cut = rng.randint(0, len(question))
    return question[:cut] + "<image>" + question[cut:]


def plain_record(rng: random.Random, index: int) -> dict:
    """A record the fast path takes: human/gpt pairs, one placeholder per image, every turn with text."""
    pairs = rng.choice([1, 1, 1, 2, 3, 6]) if rng.random() < 0.9 else rng.randint(1, 6)
    image = rng.choice(PATHS) if rng.random() < 0.7 else None
    where = rng.randrange(pairs)  # the human turn holding the placeholder
    turns = []
    for pair in range(pairs):
        question = rng.choice(DETAIL) if pair == 0 and rng.random() < 0.2 else _text(rng)
        if image is not None and pair == where:
            question = _with_placeholder(rng, question)
        answer = rng.choice(REFUSALS) if rng.random() < 0.08 else _text(rng)
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    if rng.random() < 0.05:
        turns[1]["weight"] = 0.5  # extra keys in a turn are not carried over, and change nothing inspect counts
    record: dict = {}
    id_kind = rng.random()
    if id_kind < 0.55:
        record["id"] = rng.choice([f"coco-{index}", f"{index:012d}", f"GCC_train_{index}", f"q{index}-detail",
                                   f"r{index}_complex", f"s{index}-conversation", f"x{index}detail", f"id {index}",
                                   f"{index}-Detail", f"cap:{index}"])
    elif id_kind < 0.75:
        record["id"] = index * 7 + 100_000
    elif id_kind < 0.85:
        record["id"] = None
    if image is not None:
        record["image"] = image
    elif rng.random() < 0.3:
        record["image"] = None
    if rng.random() < 0.1:
        record["source"] = rng.choice(["sharegpt", "", "coco", "ＣＯＣＯ"])
    if rng.random() < 0.1:
        record["type"] = rng.choice(["detail", "Conversation", "complex_reasoning", "bogus", "", "REASONING"])
    record["conversations"] = turns
    if rng.random() < 0.05:  # key order is not the fast path's business (the reader learns cuts from "id")
        keys = list(record)
        rng.shuffle(keys)
        record = {key: record[key] for key in keys}
    return record


def _turns(record: dict) -> list:
    return record["conversations"]


HOSTILE_KINDS = 35  # kinds past these give plain records


def hostile_record(rng: random.Random, index: int, kind: int | None = None) -> object:
    """A record the fast path must hand to the reference path (or one the converter rejects)."""
    record = plain_record(rng, index)
    turns = _turns(record)
    kind = rng.randrange(HOSTILE_KINDS + 9) if kind is None else kind
    human = rng.randrange(0, len(turns), 2)
    if kind == 0:
        turns.insert(0, {"from": "system", "value": "You are a helpful assistant."})
    elif kind == 1:
        turns.insert(0, {"from": "gpt", "value": "Hello."})
    elif kind == 2:
        turns.append({"from": "human", "value": "And then?"})
    elif kind in (3, 4):
        turns[rng.randrange(len(turns))]["value"] = rng.choice(BLANKS)
    elif kind == 5:
        turns[1]["value"] += " <image>"
    elif kind == 6:  # an image without its placeholder
        record["image"] = rng.choice(PATHS)
        for turn in turns:
            turn["value"] = turn["value"].replace("<image>", "") or "text"
    elif kind == 7:  # a placeholder without an image
        record.pop("image", None)
        turns[human]["value"] += "<image>"
    elif kind == 8:
        record["image"] = rng.choice(PATHS)
        turns[0]["value"] = "<image> <image> " + turns[0]["value"].replace("<image>", "")
    elif kind == 9:
        record["image"] = []
    elif kind == 10:
        record["image"] = [rng.choice(PATHS)]
        turns[0]["value"] = "<image>\n" + turns[0]["value"].replace("<image>", "")
    elif kind == 11:
        record["image"] = [rng.choice(PATHS), rng.choice(PATHS)]
        turns[0]["value"] = "<image><image>\n" + turns[0]["value"].replace("<image>", "")
    elif kind == 12:
        record["image"] = rng.choice(["", " ", "\u3000", "\n"])
    elif kind == 13:
        record["image"] = "coco/a\x00b.jpg"
    elif kind == 14:
        record["id"] = rng.choice([True, False, 1.5, -0.0, [1], {"a": 1}])
    elif kind == 15:
        turns[rng.randrange(len(turns))]["from"] = rng.choice([1, 0, 2.5, None, True])
    elif kind == 16:
        turns[rng.randrange(len(turns))]["from"] = rng.choice([["human"], {"role": "gpt"}, []])
    elif kind == 17:
        turns[rng.randrange(len(turns))]["from"] = rng.choice(["Human", "user", "assistant", "GPT", " human", ""])
    elif kind == 18:
        del turns[rng.randrange(len(turns))][rng.choice(["from", "value"])]
    elif kind == 19:
        turns[rng.randrange(len(turns))] = rng.choice(["human: hi", ["human", "hi"], None, 3, {}])
    elif kind == 20:
        turns[rng.randrange(len(turns))]["value"] = rng.choice([3, None, ["a"], {"t": "x"}, True, 1.5])
    elif kind == 21:
        record["conversations"] = rng.choice(["hi", {"from": "human", "value": "hi"}, None, 3, []])
    elif kind == 22:
        del record["conversations"]
    elif kind == 23:
        record["conversations"] = turns[:1]
    elif kind == 24:
        turns.append({"from": "gpt", "value": "Twice."})
    elif kind == 25:
        turns[1]["from"] = "human"
    elif kind == 26:
        return rng.choice([[record], "a record", 42, None, True, 1.5, []])
    elif kind == 27:
        record.setdefault("image", None)  # both keys: not a converted line
        record["images"] = [record["image"]] if record["image"] is not None else []
    elif kind == 28:
        record["image"] = rng.choice(["../outside.jpg", "/abs/path.jpg", "coco/../../up.jpg", "missing/none.jpg"])
        turns[0]["value"] = "<image>\n" + turns[0]["value"].replace("<image>", "")
    elif kind == 29:
        turns[human]["value"] = rng.choice(BLANKS[1:]) + "<image>" + rng.choice(BLANKS[1:])
        record["image"] = rng.choice(PATHS)
    elif kind == 30:
        record["image"] = rng.choice([3, True, {"path": "a.jpg"}, [3], ["a.jpg", ""], [None]])
    elif kind == 31:
        turns.insert(rng.randrange(1, len(turns) + 1), {"from": "system", "value": "late system"})
    elif kind == 32:
        turns[0]["value"] = "\x00" + turns[0]["value"]  # a NUL in a turn is text like any other
        return record  # still plain: the fast path must count it as the reference does
    elif kind == 33:
        record["id"] = rng.choice(["", " ", "\n"])
        return record  # plain too
    elif kind == 34:
        turns[-1]["value"] = "<IMAGE> <image_> <Image>"
        return record  # not placeholders: plain
    else:
        return plain_record(rng, index)  # more plain records between the hostile ones
    return record


def _one_pass_only(rng: random.Random, index: int) -> object:
    """Records the fast reader hands to the converter's reader (orjson refuses them) or that only a one-pass
    scan reads (converted lines): they give up the two-process split."""
    record = plain_record(rng, index)
    turns = _turns(record)
    kind = rng.randrange(9)
    if kind == 0:
        turns[rng.randrange(len(turns))]["value"] += "\ud800"
    elif kind == 1:
        record["id"] = f"lone\udc00{index}"
    elif kind == 2:
        record["image"] = "coco/\ud83d.jpg"
        turns[0]["value"] = "<image>\n" + turns[0]["value"].replace("<image>", "")
    elif kind == 3:
        record["id"] = 123456789012345678901234567890 + index
    elif kind == 4:
        record["id"] = float("nan")
    elif kind == 5:
        turns[0]["value"] = "\ud83d\ude00 a real pair " + turns[0]["value"]  # written as an escaped pair: plain
    elif kind == 6:
        return {"id": f"conv{index}", "images": [], "conversations": [
            {"from": "human", "value": "Hi?"}, {"from": "gpt", "value": f"Converted {index}."}]}
    elif kind == 7:
        return {"id": f"conv{index}", "images": [rng.choice(PATHS)], "conversations": [
            {"from": "human", "value": "<image>What?"}, {"from": "gpt", "value": "That."}]}
    else:
        record["type"] = "detail\ud800"
    return record


def mixed_records(seed: int, one_pass: bool) -> list:
    rng = random.Random(seed)
    records: list = []
    while len(records) < COUNT:  # runs of plain records (whole batches for the fast path) between hostile ones
        records += [plain_record(rng, len(records) + n) for n in range(rng.choice([2, 8, 20, 40, 80]))]
        records += [hostile_record(rng, len(records) + n) for n in range(rng.randint(1, 6))]
    records = records[:COUNT]
    records[0], records[1] = plain_record(rng, 0), plain_record(rng, 1)  # the reader learns the array's separator from these
    for _ in range(25):  # exact duplicate contents (a fresh id, or none), near and far from their first
        source = rng.randrange(COUNT - 1)
        target = rng.randrange(source + 1, COUNT) if rng.random() < 0.7 else rng.randrange(0, source + 1)
        if isinstance(records[source], dict):
            records[target] = copy.deepcopy(records[source])
            records[target]["id"] = f"dup-{target}" if rng.random() < 0.8 else None
    for _ in range(10):  # duplicate ids
        source, target = rng.randrange(COUNT), rng.randrange(COUNT)
        if isinstance(records[source], dict) and isinstance(records[target], dict) and source != target:
            records[target]["id"] = records[source].get("id", source)
    for at, claimer in ((5, 200), (250, 40), (77, 79)):  # an id that is another record's index, and the reverse
        if isinstance(records[at], dict) and isinstance(records[claimer], dict):
            records[at].pop("id", None)
            records[claimer]["id"] = str(at) if claimer % 2 else at
    if one_pass:  # in the last quarter, so the chunks before them stay on the fast reader
        for index in rng.sample(range(COUNT * 3 // 4, COUNT), 20):
            records[index] = _one_pass_only(rng, index)
    return records



def write_records(path: Path, records: list, layout: str) -> Path:
    if layout == "jsonl":
        path.write_text("\n".join(json.dumps(record) for record in records) + "\n", encoding="utf-8")
    else:  # ensure_ascii: a lone surrogate is written as its escape
        path.write_text(json.dumps(records, indent=1 if layout == "indent" else None), encoding="utf-8")
    return path



def make_image_folder(root: Path) -> Path:
    """Two thirds of the paths as tiny real images of several shapes, one a file that is no image."""
    rng = random.Random(SEED)
    for position, path in enumerate(PATHS):
        if position % 3 == 0:
            continue  # missing
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        if position % 11 == 1:
            full.write_bytes(b"not an image")
            continue
        Image.new("RGB", (rng.randint(1, 40), rng.randint(1, 40)), (position, 0, 0)).save(full, "PNG")
    return root


class FastPathCalls:
    """Counts the batches the fast path took (in this process)."""

    def __init__(self) -> None:
        self.taken = 0
        self.refused = 0


def inspect_both(monkeypatch, path: Path, options: InspectOptions, split: bool) -> tuple[dict, dict, FastPathCalls]:
    calls = FastPathCalls()
    real = scan.plain_batch
    merges: list[int] = []

    def counted(*args):
        result = real(*args)
        if result is None:
            calls.refused += 1
        else:
            calls.taken += 1
        return result

    real_merge = DatasetStats.merge

    def merge(self, later, line_offset):
        merges.append(later.records)
        return real_merge(self, later, line_offset)

    monkeypatch.setattr(scan, "plain_batch", counted)
    monkeypatch.setattr(DatasetStats, "merge", merge)
    fast = inspect_datasets([DatasetInput("data", path)], options)
    with monkeypatch.context() as off:
        off.setattr(scan, "plain_batch", lambda *args: None)
        off.setattr(split_scan, "plain_seed", lambda *args: None)
        slow = inspect_datasets([DatasetInput("data", path)], options)
    assert (len(merges) == 2) == split, f"the two-process scan {'did not run' if split else 'ran'}: {merges}"
    return fast, slow, calls


def pair(question: str, answer: str = "An answer.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]

