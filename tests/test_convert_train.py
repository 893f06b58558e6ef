"""Converted data trains through the real llamafactory-cli: a LLaVA file with image and text-only samples in one
batch, and parquet shards in LLaVA-NeXT-Data's layout with every kind of row the converter keeps."""

from __future__ import annotations

import json

import pytest
from helpers.cli import llava_lf
from helpers.host_cli import cli
from helpers.parquet_shards import write_shards

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.host]


def test_converted_mixed_data_trains_with_llava_v1(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    first, second = sorted(p.name for p in data.image_dir.iterdir() if p.suffix in (".png", ".jpg"))[:2]
    records = [
        {"id": "img-end", "image": first, "conversations": [
            {"from": "human", "value": "What shape is shown?\n<image>"}, {"from": "gpt", "value": "A circle."},
            {"from": "human", "value": "What colour is it?"}, {"from": "gpt", "value": "Red."}]},
        {"id": "text-system", "conversations": [
            {"from": "system", "value": "Answer in one word."},
            {"from": "human", "value": "Which colour is the sky?"}, {"from": "gpt", "value": "Blue."}]},
        {"id": "img-list", "image": [second], "conversations": [
            {"from": "human", "value": "<image>\nHow many shapes?"}, {"from": "gpt", "value": "Two."}]},
        {"id": "text-gpt-first", "conversations": [
            {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Name a shape."},
            {"from": "gpt", "value": "A square."}]},
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    datasets = tmp_path / "datasets"
    convert = llava_lf("convert", src, "--image-folder", data.image_dir, "--out", datasets, "--name", "mixed",
                       "--template", "llava_v1", "--cutoff-len", "128", "--model", tiny_llava, "--strict")
    assert convert.returncode == 0, convert.stdout + convert.stderr
    written = [json.loads(line) for line in (datasets / "mixed.jsonl").read_text().splitlines()]
    assert sorted(bool(record["images"]) for record in written) == [False, False, True, True]

    config = {
        "model_name_or_path": str(tiny_llava), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "mixed", "dataset_dir": str(datasets), "template": "llava_v1",
        "cutoff_len": 128, "preprocessing_num_workers": 1, "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,  # all four samples, image and text-only, in every batch
        "max_steps": 2, "learning_rate": 1.0e-3, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    cli("train", path, {}, tmp_path / "train.log")
    log = (tmp_path / "train.log").read_text()
    assert "Num examples = 4" in log and "Total optimization steps = 2" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_converted_parquet_shards_train(tmp_path, tiny_llava):
    """Single, multi-image, path-only and text-only rows together, one step. Converted with --verify-images: the
    set holds a JPEG cut in its pixel data, which only decoding finds and which the host would stop on."""
    data, images = write_shards(tmp_path)
    out = tmp_path / "datasets"
    done = llava_lf("convert", data, "--image-folder", images, "--out", out, "--name", "next", "--verify-images",
                    "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = len((out / "next.jsonl").read_text().splitlines())
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
