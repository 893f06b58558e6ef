"""Shared fixtures: tiny real models built from config, real files; nothing downloaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers.ports import free_port, wait_for_port  # noqa: F401  (re-exported for the test files)

os.environ["HF_HUB_OFFLINE"] = "1"  # an accidental download fails fast
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def plugin_wheel(tmp_path_factory) -> Path:
    """The project's wheel (what `pip install .` installs), built once per session by hatchling in process."""
    from hatchling.builders.wheel import WheelBuilder

    out = tmp_path_factory.mktemp("plugin_dist")
    return Path(next(iter(WheelBuilder(str(REPO)).build(directory=str(out), versions=["standard"]))))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small synthetic picture set (the demo's generator) converted to a host dataset."""
    from llava_lf.data.convert import convert_file
    from llava_lf.demo.dataset import write_demo_data

    root = tmp_path_factory.mktemp("demo_data")
    data = write_demo_data(root / "data", n_train=40, n_test=4, image_size=48, seed=0)
    for name, source in (("shapes_caption", data.caption_json), ("shapes_instruct", data.instruct_json)):
        convert_file(source, data.image_dir, root / "datasets", name)
    return data, root / "datasets"


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory, demo_data):
    """A tiny CLIP vision tower and a tiny LLaMA (with its tokenizer) saved as HF directories."""
    import json

    from llava_lf.demo.tiny_models import TinyDims, build_language_model, build_vision_tower, train_tokenizer

    data, _ = demo_data
    root = tmp_path_factory.mktemp("tiny_parts")
    dims = TinyDims(text_layers=2, vocab_size=400)
    texts = [json.loads(line)["text"] for line in data.text_corpus.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, dims.vocab_size)
    return build_vision_tower(dims, root / "clip"), build_language_model(dims, tokenizer, root / "llama")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory, tiny_parts):
    """The tiny parts assembled into a llava-hf checkpoint by our assembler."""
    from llava_lf.assembly import AssemblySpec, assemble

    clip, llama = tiny_parts
    return assemble(AssemblySpec(vision=clip, llm=llama, out=tmp_path_factory.mktemp("tiny_llava") / "model"))


@pytest.fixture(scope="session")
def recipe_chain(tmp_path_factory, tiny_llava, demo_data):
    """The shipped LLaVA-1.5 stage 1 and stage 2 (plus a killed-and-resumed stage 2) on the tiny model, through
    `llamafactory-cli train`, once per session (helpers/recipe_chain.py); for tests that read its outputs."""
    from helpers.recipe_chain import build_recipe_chain

    return build_recipe_chain(tmp_path_factory.mktemp("recipe"), tiny_llava, demo_data)


@pytest.fixture(scope="session")
def recipe_export(recipe_chain):
    """`llamafactory-cli export` of the session's stage 1 + stage-2 adapter (yaml/llava1_5_lora_export.yaml)."""
    from helpers.recipe_chain import export_chain

    return export_chain(recipe_chain)
