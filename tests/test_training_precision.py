"""A float16 checkpoint (what the `llava1_5_*` assemble presets write) trained on a CPU without mixed precision
stops before its first step with the fix (assemble in float32 for CPU runs), instead of the first matrix
product's "expected m1 and m2 to have the same dtype ... Half != float"."""

from __future__ import annotations

import pytest
from conftest import REPO
from helpers.recipe_chain import cli

pytestmark = [pytest.mark.slow, pytest.mark.host]


@pytest.mark.timeout(600)
def test_float16_weights_on_a_cpu_are_refused_with_the_fix(tiny_parts, demo_data, tmp_path):
    from llava_lf.assembly import AssemblySpec, assemble

    clip, llama = tiny_parts
    _, datasets = demo_data
    model = assemble(AssemblySpec(vision=clip, llm=llama, out=tmp_path / "fp16", dtype="float16", progress=False))
    log = tmp_path / "train.log"
    process = cli("train", REPO / "yaml/llava1_5_lora_sft.yaml",
                  {"model_name_or_path": model, "dataset": "shapes_instruct", "dataset_dir": datasets,
                   "output_dir": tmp_path / "out", "bf16": "false", "tf32": "null", "max_steps": 1,
                   "per_device_train_batch_size": 2, "cutoff_len": 64, "preprocessing_num_workers": 1,
                   "dataloader_num_workers": 0}, log, wait=False)
    assert process.wait(timeout=600) != 0
    text = log.read_text()
    assert "the model's weights are float16" in text and "--dtype float32" in text, text[-3000:]
    assert "RuntimeError: expected m1 and m2" not in text  # refused before the first step, not at it
