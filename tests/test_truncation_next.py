"""`llamafactory-cli train` with template llava_v1 on a tiny LLaVA-NeXT assembled from the tiny parts, images of mixed
shapes: the tokenised inputs hold, per image, the run of image tokens transformers' processor expands that image to,
and a cutoff_len below the big image's sample trims and drops whole turns (reported) instead of cutting an image."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from helpers.host_cli import cli
from helpers.tiny_next import assemble_tiny_next

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]

# (width, height): wide 3:1, tall and odd, under the host's 32*32 floor, and a 2x2-canvas square (the most tokens)
SHAPES = {"wide": (150, 50), "tall": (37, 101), "small": (20, 14), "big": (200, 200)}


def turns(*texts: str) -> list[dict[str, str]]:
    return [{"from": "human" if index % 2 == 0 else "gpt", "value": text} for index, text in enumerate(texts)]


FIRST = turns("<image>\nWhat is it?", "a circle", "<image>\nAnd this one?", "a square")  # the example the host prints
BIG = turns("<image>\nLook closely and tell me which shape is in the top left corner and what colour it has, then "
            "which shape is next to it, how large both of them are and what is in the bottom right corner", "red")
SMALL = turns("<image>\nWhat is it?", "a cross")
THREE_TURNS = turns("<image>\nWhat is it?", "a cross", "<image>\nAnd this one?", "a circle", "<image>\nAnd here?", "two")


@pytest.fixture(scope="module")
def next_model(tmp_path_factory, tiny_parts) -> Path:
    out = tmp_path_factory.mktemp("next_truncation") / "llava_next"
    assemble_tiny_next(tiny_parts, out)
    return out


def processor_counts(model: Path, paths: list[str]) -> list[int]:
    """What the checkpoint's own LlavaNextProcessor expands each image to, on the pixels the host's collator feeds."""
    from PIL import Image
    from transformers import AutoProcessor

    from llava_lf.common.image_tokens import host_resized_size

    processor = AutoProcessor.from_pretrained(model)
    counts = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        image = image.resize(host_resized_size(*image.size, 768 * 768, 32 * 32))
        input_ids = processor(text="<image>", images=[image])["input_ids"][0]
        counts.append(list(input_ids).count(processor.image_token_id))
    return counts


def pair_lengths(model: Path, sample: list[dict[str, str]], images: list[str]) -> list[int]:
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    template = get_template_and_fix_tokenizer(processor.tokenizer, DataArguments(template="llava_v1"))
    messages = [{"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]}
                for turn in sample]
    messages = template.mm_plugin.process_messages(messages, images, [], [], processor)
    return [len(source) + len(target) for source, target in template.encode_pairs(processor.tokenizer, messages)]


def image_runs(input_ids: list[int], image_id: int) -> list[int]:
    """Lengths of the runs of `image_id` in order."""
    return [len(list(run)) for token_id, run in itertools.groupby(input_ids) if token_id == image_id]


@pytest.mark.timeout(400)
def test_next_counts_per_image_and_whole_turn_truncation(tmp_path, next_model):
    from PIL import Image

    paths = {}
    for index, (name, size) in enumerate(SHAPES.items()):
        paths[name] = str(tmp_path / f"{name}.jpg")
        Image.new("RGB", size, (40 * index, 120, 200)).save(paths[name])
    counts = dict(zip(SHAPES, processor_counts(next_model, list(paths.values()))))
    assert len(set(counts.values())) == len(counts)  # four shapes, four counts

    samples = [(FIRST, ["wide", "tall"]), (BIG, ["big"]), (SMALL, ["small"]), (THREE_TURNS, ["small", "big", "wide"]),
               (SMALL, ["wide"]), (BIG, ["big"])]
    lengths = [pair_lengths(next_model, sample, [paths[name] for name in names]) for sample, names in samples]
    cutoff_len = max(sum(lengths[0]), sum(lengths[2]), sum(lengths[4]), sum(lengths[3][:2]))
    assert lengths[1][0] > cutoff_len and sum(lengths[3]) > cutoff_len  # BIG drops, THREE_TURNS loses its 3rd turn

    datasets = tmp_path / "datasets"
    datasets.mkdir()
    with (datasets / "mixed.jsonl").open("w") as out:
        for sample, names in samples:
            out.write(json.dumps({"conversations": sample, "images": [paths[name] for name in names]}) + "\n")
    (datasets / "dataset_info.json").write_text(json.dumps({"mixed": {
        "file_name": "mixed.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}}))
    config = {
        "model_name_or_path": str(next_model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "mixed", "dataset_dir": str(datasets), "template": "llava_v1",
        "cutoff_len": cutoff_len, "overwrite_cache": True, "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2, "max_steps": 3, "learning_rate": 1.0e-3, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    cli("train", tmp_path / "train.yaml", {}, tmp_path / "train.log", timeout=380)
    log = (tmp_path / "train.log").read_text()
    assert "Image features and image tokens do not match" not in log

    from transformers import AutoProcessor

    image_id = AutoProcessor.from_pretrained(next_model).image_token_id
    printed = json.loads(re.search(r"input_ids:\n(\[[0-9, ]*\])", log).group(1))
    assert image_runs(printed, image_id) == [counts["wide"], counts["tall"]]

    head, *records = [json.loads(line) for line in (tmp_path / "out" / "llava_lf_truncation.jsonl").read_text().splitlines()]
    assert head["summary"] == {"cutoff_len": cutoff_len, "template": "llava_v1", "trimmed": 1, "dropped": 2}
    assert [(record["index"], record["action"], record["image_tokens"], record["kept_image_tokens"])
            for record in records] == [(1, "dropped", counts["big"], 0),
                                       (3, "trimmed", counts["small"] + counts["big"] + counts["wide"],
                                        counts["small"] + counts["big"]),
                                       (5, "dropped", counts["big"], 0)]
