"""Assembled LLaVA-NeXT checkpoints in every transformers this project meets: the release venv's and the host main's
(in process: this file is marked `host`, so `make test` runs it on both), and 4.57 (a fresh interpreter with
`make transformers-4.57`'s folder first on its path). Each loads with no missing or unexpected keys, its processor
places the AnyRes count for images of several shapes, and a forward pass consumes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.host]

TF457 = "4.57.6"
TF457_DIR = BIN.parent / ".transformers-4.57"  # the Makefile's TF457_DIR, beside this venv's bin/
SHAPES = ((20, 14), (150, 50), (50, 150), (37, 101), (97, 61), (161, 121))  # (width, height)
# Loads each checkpoint, feeds each shape through its processor and model; prints what it saw as JSON.
LOAD = """
import json, sys
import torch, transformers
from PIL import Image
from transformers import AutoProcessor, LlavaNextForConditionalGeneration
shapes = json.loads(sys.argv[1])
seen = {"version": transformers.__version__}
for directory in sys.argv[2:]:
    model, info = LlavaNextForConditionalGeneration.from_pretrained(directory, output_loading_info=True)
    processor = AutoProcessor.from_pretrained(directory)
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                            {"type": "text", "text": "What is it?"}]}], add_generation_prompt=True)
    counts = []
    for width, height in shapes:
        inputs = processor(text=prompt, images=Image.new("RGB", (width, height), (200, 30, 30)), return_tensors="pt")
        with torch.no_grad():
            model(**inputs)
        counts.append(int((inputs["input_ids"] == model.config.image_token_index).sum()))
    seen[directory] = {"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
                       "counts": counts, "processor": type(processor).__name__,
                       "newline": model.model.image_newline.float().tolist()[:4]}
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_parts) -> list[Path]:
    """NeXT from parts with the Vicuna and the ChatML (34B) presets, and a LLaVA-1.5 stage 1 upgraded."""
    from llava_lf.assembly import AssemblySpec, UpgradeSpec, assemble, upgrade_to_next
    from llava_lf.assembly.presets import load_preset

    clip, llama = tiny_parts
    root = tmp_path_factory.mktemp("next_hub")
    built = [assemble(AssemblySpec(vision=clip, llm=llama, out=root / name, progress=False, **load_preset(name)))
             for name in ("llava1_6_vicuna_7b", "llava1_6_34b")]
    stage1 = assemble(AssemblySpec(vision=clip, llm=llama, out=root / "stage1", progress=False,
                                   **load_preset("llava1_5_7b")))
    built.append(upgrade_to_next(UpgradeSpec(llava=stage1, out=root / "upgraded", progress=False,
                                             anyres_grids=load_preset("llava1_6_vicuna_7b")["anyres_grids"])))
    return built


def expected_counts(directory: Path) -> list[int]:
    from llava_lf.common.anyres import image_token_count

    config = json.loads((directory / "config.json").read_text())
    tile, patch = config["vision_config"]["image_size"], config["vision_config"]["patch_size"]
    return [image_token_count(height, width, config["image_grid_pinpoints"], tile, patch) for width, height in SHAPES]


def check(seen: dict, checkpoints: list[Path]) -> None:
    from safetensors.torch import load_file

    for directory in checkpoints:
        loaded = seen[str(directory)]
        assert loaded["missing"] == [] and loaded["unexpected"] == [], (directory.name, loaded)
        assert loaded["processor"] == "LlavaNextProcessor"
        assert loaded["counts"] == expected_counts(directory), directory.name
        stored = load_file(directory / "model.safetensors")["image_newline"].float().tolist()[:4]
        assert loaded["newline"] == pytest.approx(stored), directory.name  # read from the file, not initialised


def test_next_checkpoints_load_and_run_in_this_transformers(checkpoints, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["load", json.dumps(SHAPES), *map(str, checkpoints)])
    exec(compile(LOAD, "load", "exec"), {})  # the same script, in this interpreter
    check(json.loads(capsys.readouterr().out.strip().splitlines()[-1]), checkpoints)


def test_next_checkpoints_load_and_run_under_transformers_4_57(checkpoints):
    if not (TF457_DIR / ".installed").is_file():
        pytest.fail(f"{TF457_DIR} is missing (or half made): run `make transformers-4.57` first; `make test` and "
                    f"`make test-release` do it", pytrace=False)
    env = {**os.environ, "PYTHONPATH": str(TF457_DIR), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOAD, json.dumps(SHAPES), *map(str, checkpoints)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["version"] == TF457
    check(seen, checkpoints)
