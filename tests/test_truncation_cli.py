"""`llamafactory-cli train` with cutoff_len below some samples' image + text: no crash, every trim and drop reported.

The cutoff is chosen from the tiny checkpoint's own token counts: a one-turn sample fits, a second turn does
not. Without our template the host would cut the second turn's prompt inside its image (the forward pass then
fails with "Image features and image tokens do not match"); with it, that turn goes whole and the collator
leaves its image out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.host_cli import cli

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]

SHORT = [{"from": "human", "value": "<image>\nWhat color is the cross?"}, {"from": "gpt", "value": "orange"}]
SECOND_TEXT = [{"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "2"}]
SECOND_IMAGE = [{"from": "human", "value": "<image>\nAnd in this one?"}, {"from": "gpt", "value": "3"}]
LONG = [{"from": "human", "value": "Look closely and tell me which shape is in the top left corner and what colour "
                                   "it has, then which shape is next to it\n<image>"},
        {"from": "gpt", "value": "a red circle"}]
TEXT_ONLY = [{"from": "human", "value": "What is two plus two?"}, {"from": "gpt", "value": "4"}]


def _pair_lengths(model: Path, image: str, turns: list[dict[str, str]], images: list[str]) -> list[int]:
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    template = get_template_and_fix_tokenizer(processor.tokenizer, DataArguments(template="llava_v1"))
    messages = [{"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]} for turn in turns]
    messages = template.mm_plugin.process_messages(messages, images, [], [], processor)
    return [len(source) + len(target) for source, target in template.encode_pairs(processor.tokenizer, messages)]


@pytest.mark.timeout(300)
def test_train_trims_and_drops_instead_of_cutting_images(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    image = str(min(data.image_dir.iterdir()))
    short, second = _pair_lengths(tiny_llava, image, SHORT + SECOND_IMAGE, [image, image])
    cutoff_len = short + 5  # the second turn's prompt would be cut after 5 tokens, inside its 9 image tokens
    assert second > 5 + 9 and _pair_lengths(tiny_llava, image, LONG, [image])[0] > cutoff_len
    assert sum(_pair_lengths(tiny_llava, image, TEXT_ONLY, [])) <= cutoff_len

    samples = [(SHORT, 1), (SHORT + SECOND_TEXT, 1), (LONG, 1), (SHORT + SECOND_IMAGE, 2), (TEXT_ONLY, 0),
               (SHORT, 1), (SHORT + SECOND_IMAGE, 2), (LONG, 1), (SHORT + SECOND_TEXT, 1), (SHORT, 1)]
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    with (datasets / "mixed.jsonl").open("w") as out:
        for turns, n_images in samples:
            out.write(json.dumps({"conversations": turns, "images": [image] * n_images}) + "\n")
    (datasets / "dataset_info.json").write_text(json.dumps({"mixed": {
        "file_name": "mixed.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}}))
    config = {
        "model_name_or_path": str(tiny_llava), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "mixed", "dataset_dir": str(datasets), "template": "llava_v1",
        "cutoff_len": cutoff_len, "preprocessing_num_workers": 2, "overwrite_cache": True,
        "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 2, "max_steps": 5,
        "learning_rate": 1.0e-3, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    cli("train", tmp_path / "train.yaml", {}, tmp_path / "train.log", timeout=280)
    log = (tmp_path / "train.log").read_text()
    assert "Image features and image tokens do not match" not in log
    assert (f"llava-lf: cutoff_len {cutoff_len} (llava_v1): 4 samples trimmed at turn boundaries "
            "(indices 1, 3, 6, 8), 2 dropped as longer than cutoff_len in their first turn (indices 2, 7)") in log
    head, *records = [json.loads(line) for line in (tmp_path / "out" / "llava_lf_truncation.jsonl").read_text().splitlines()]
    assert head["summary"] == {"cutoff_len": cutoff_len, "template": "llava_v1", "trimmed": 4, "dropped": 2}
    assert [(record["index"], record["action"], record["image_tokens"], record["kept_image_tokens"])
            for record in records] == [(1, "trimmed", 9, 9), (2, "dropped", 9, 0), (3, "trimmed", 18, 9),
                                       (6, "trimmed", 18, 9), (7, "dropped", 9, 0), (8, "trimmed", 9, 9)]
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
