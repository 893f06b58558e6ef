"""The benchmark's synthetic samples, written once and given to each path the way its users give them.

One LLaVA JSON file (the original format) with one noise JPEG per sample: photo-like to decode, so the
stock path's per-sample image decoding costs what it costs on real data. The stock path reads the
records as a stock LLaMA-Factory user writes them (sharegpt `messages`, registered by hand); our path
reads what `llava_lf.data.convert` makes of the same LLaVA JSON. Same texts, same images, same order.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .model import WORDS

DATASET = "bench"


@dataclass(frozen=True)
class BenchData:
    """Where everything lies under one root."""

    root: Path

    @property
    def llava_json(self) -> Path:
        return self.root / "llava" / f"{DATASET}.json"

    @property
    def image_dir(self) -> Path:
        return self.root / "images"

    @property
    def media_dir(self) -> Path:  # the stock path's media_dir: its image paths start here
        return self.root

    @property
    def stock_dir(self) -> Path:  # dataset_dir of the stock path
        return self.root / "stock"

    @property
    def ours_dir(self) -> Path:  # dataset_dir written by our converter
        return self.root / "ours"


def text_lengths(count: int, mean_words: int, spread: float, seed: int) -> list[int]:
    """Words per sample: all `mean_words` (spread 0, the anchor's shape), or uniform in mean x [1-spread, 1+spread]."""
    rng = random.Random(seed)
    low, high = max(4, round(mean_words * (1 - spread))), max(4, round(mean_words * (1 + spread)))
    return [rng.randint(low, high) for _ in range(count)]


def word_cycle(seed: int) -> dict[str, str]:
    """A fixed random successor for every word: answers follow it, so they are learnable beyond word
    frequencies and the loss keeps falling for many steps (a curve that can tell two trainings apart)."""
    words = list(dict.fromkeys(WORDS))
    order = words[:]
    random.Random(seed).shuffle(order)
    return {word: order[(index + 1) % len(order)] for index, word in enumerate(order)}


def llava_records(count: int, mean_words: int, spread: float, seed: int) -> list[dict]:
    """LLaVA-format records: a random question of a quarter of the words, an answer of the rest."""
    rng = random.Random(seed + 1)
    successor = word_cycle(seed)
    records = []
    for index, words in enumerate(text_lengths(count, mean_words, spread, seed)):
        question = " ".join(rng.choice(WORDS) for _ in range(max(1, words // 4))) + "?"
        answer = [rng.choice(WORDS)]
        while len(answer) < max(1, words - words // 4):
            answer.append(successor[answer[-1]])
        records.append({"id": f"bench-{index}", "image": f"{index}.jpg", "conversations": [
            {"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": " ".join(answer) + "."}]})
    return records


def write_images(image_dir: Path, count: int, size: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"{index}.jpg", quality=90)


def write_stock_dataset(records: list[dict], stock_dir: Path) -> None:
    """The same records as a stock user registers them: sharegpt `messages` with role/content tags."""
    rows = [{"messages": [{"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]}
                          for turn in record["conversations"]],
             "images": [f"images/{record['image']}"]} for record in records]
    (stock_dir / f"{DATASET}.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {DATASET: {"file_name": f"{DATASET}.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "images": "images"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}}}
    (stock_dir / "dataset_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")


def write_bench_data(data: BenchData, samples: int, image_size: int, mean_words: int, spread: float,
                     seed: int = 0) -> None:
    from llava_lf.data.convert import convert_file

    data.stock_dir.mkdir(parents=True, exist_ok=True)
    data.llava_json.parent.mkdir(parents=True, exist_ok=True)
    write_images(data.image_dir, samples, image_size, seed)
    records = llava_records(samples, mean_words, spread, seed)
    data.llava_json.write_text(json.dumps(records), encoding="utf-8")
    write_stock_dataset(records, data.stock_dir)
    report = convert_file(data.llava_json, data.image_dir, data.ours_dir, DATASET)
    if report.rejected or report.written != samples:
        raise RuntimeError(f"our converter kept {report.written} of {samples} benchmark records "
                           f"({dict(report.reasons)}); both paths must train on the same samples")
