"""Bad input to the assembler: each a clear error naming the file and the fix, and nothing left at --out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_assemble import assemble_to, build_models

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_parts) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("assemble_models"), tiny_parts)


def leftovers(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if ".partial-" in path.name or ".replaced-" in path.name]


def no_preprocessor(tmp_path: Path, clip: Path) -> Path:
    copy = tmp_path / "clip_without_processor"
    shutil.copytree(clip, copy)
    (copy / "preprocessor_config.json").unlink()
    return copy


def truncated_llm(tmp_path: Path, llama: Path) -> Path:
    copy = tmp_path / "llama_truncated"
    shutil.copytree(llama, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    return copy


def wide_projector(tmp_path: Path) -> Path:
    file = tmp_path / "mm_projector.bin"
    torch.save({"model.mm_projector.0.weight": torch.zeros(128, 32), "model.mm_projector.0.bias": torch.zeros(128),
                "model.mm_projector.2.weight": torch.zeros(128, 128), "model.mm_projector.2.bias": torch.zeros(128)},
               file)
    return file


CASES = {
    # name: (spec fields, expected message); a callable field is made from (tmp_path, models)
    "vision is a language model": ({"vision": "llama"}, r"model_type 'llama' is not a CLIP or SigLIP vision model"),
    "vision has no config": ({"vision": lambda t, m: t}, r"no config.json; give a Hugging Face model directory"),
    "vision path missing": ({"vision": lambda t, m: t / "nowhere"}, r"nowhere: no such directory"),
    "vision without processor": ({"vision": lambda t, m: no_preprocessor(t, m["clip"])},
                                 r"no preprocessor_config.json; copy it"),
    "llm architecture unsupported": ({"llm": "gpt2"}, (r"model_type 'gpt2' is not a language model this assembler "
                                                       r"supports \(supported: llama, mistral, qwen2\)")),
    "llm is multimodal": ({"llm": lambda t, m: m["tiny_llava"]}, r"is a multimodal checkpoint.*import-llava"),
    "llm weights truncated": ({"llm": lambda t, m: truncated_llm(t, m["llama"])}, r"model.safetensors: truncated"),
    "projector too wide": ({"projector_weights": lambda t, m: wide_projector(t)},
                           r"mm_projector.bin: projector takes 32-wide vision features, but --vision .* gives 96"),
    "projector kind mismatch": ({"projector_weights": lambda t, m: wide_projector(t), "projector": "linear"},
                                r"holds a mlp2x_gelu projector but linear was asked; pass --projector mlp2x_gelu"),
    "projector file missing": ({"projector_weights": lambda t, m: t / "none.bin"}, r"none.bin: no such file"),
    "siglip keeps no cls": ({"vision": "siglip"}, r"has none; use --select-strategy full"),
    "feature layer out of range": ({"vision_feature_layer": 3}, (r"--vision-feature-layer 3: the tower .* has 2 "
                                                                 r"layers, so hidden states run from -3 to 2")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_named_error(tmp_path, models, tiny_llava, case):
    from llava_lf.assembly import AssemblyError

    fields, message = CASES[case]
    available = {**models, "tiny_llava": tiny_llava}
    spec = {"vision": models["clip"], "llm": models["llama"]}
    for key, value in fields.items():
        spec[key] = value(tmp_path, available) if callable(value) else available.get(value, value)
    with pytest.raises(AssemblyError, match=message):
        assemble_to(tmp_path, **spec)
    assert not (tmp_path / "llava").exists()
    assert leftovers(tmp_path) == []


def test_several_problems_are_reported_together(tmp_path, models):
    from llava_lf.assembly import AssemblyError

    with pytest.raises(AssemblyError) as caught:
        assemble_to(tmp_path, vision=models["siglip"], llm=models["llama"], vision_feature_layer=9)
    assert "--select-strategy full" in str(caught.value) and "--vision-feature-layer 9" in str(caught.value)


def test_out_that_is_not_a_checkpoint_is_refused(tmp_path, models):
    from llava_lf.assembly import AssemblyError

    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "notes.txt").write_text("mine")
    with pytest.raises(AssemblyError, match="exists and is not a llava checkpoint; choose a new or empty directory"):
        assemble_to(tmp_path, vision=models["clip"], llm=models["llama"])
    assert (tmp_path / "llava" / "notes.txt").read_text() == "mine"
    with pytest.raises(AssemblyError, match="is \\(or contains\\) the input"):
        assemble_to(tmp_path, vision=models["clip"], llm=tmp_path / "llava" / "model")


def test_a_failure_while_writing_keeps_the_previous_checkpoint(tmp_path, models, monkeypatch):
    from llava_lf.assembly import build

    first = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"])
    before = (first.out / "model.safetensors").read_bytes()

    def interrupted(*args, **kwargs):  # a crash in the middle of the weights (disk full, Ctrl-C)
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "grow_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], seed=5)
    assert (first.out / "model.safetensors").read_bytes() == before
    assert leftovers(tmp_path) == []

    monkeypatch.undo()
    second = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], seed=5)  # replaces the earlier one
    assert (second.out / "model.safetensors").read_bytes() != before
    assert json.loads((second.out / "config.json").read_text())["model_type"] == "llava"
    assert leftovers(tmp_path) == []
