"""`llava-lf inspect --model`: image tokens per record under a model's processing, from image headers only. On real
image files of many sizes and aspects, the counts equal what transformers' own processor expands each image to (the
tiny LLaVA-NeXT's LlavaNextProcessor on the pixels the host's collator feeds it, the tiny LLaVA-1.5's LlavaProcessor);
the cutoff figures and the data_source groups are checked on a set counted by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers.cli import llava_lf
from PIL import Image

from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets

pytestmark = pytest.mark.host  # the model view reads the host's defaults and processors

# (width, height) for the tiny tower's 48-px tiles: under a tile (the 1x2 / 2x1 tie), one tile, wide and tall past
# 3:1, near-squares over 2x2, odd sizes, and some under the host's 32*32 floor or over its 768*768 ceiling, resized
# before the processor sees them (8x20 and 1181x592 change count by it: 18 -> 33 and 30 -> 37 tokens).
SIZES = ((20, 14), (48, 48), (40, 30), (30, 40), (49, 49), (150, 48), (48, 150), (200, 45), (45, 200), (97, 61),
         (61, 97), (130, 101), (17, 55), (300, 299), (1000, 700), (96, 33), (8, 20), (1181, 592))


def _pairs(*texts: str) -> list[dict]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def _image_set(folder: Path) -> tuple[list[dict], list[Path]]:
    """Records over real JPEG and PNG files of SIZES: one image each (data_source alternating, one without), one
    record with two images, one text-only."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, (width, height) in enumerate(SIZES):
        path = folder / f"{width}x{height}.{'jpg' if index % 2 else 'png'}"
        Image.new("RGB", (width, height), (index * 13 % 255, 90, 200)).save(path)
        files.append(path)
    records = [{"id": f"r{n}", "image": path.name, "conversations": _pairs(f"<image>\nWhat is in picture {n}?",
                                                                           "Shapes. " * (n + 1))}
               | ({"data_source": ["vqa", "caption"][n % 2]} if n else {}) for n, path in enumerate(files)]
    records.append({"id": "two", "image": [files[3].name, files[14].name], "data_source": "vqa",
                    "conversations": _pairs("<image>\n<image>\nCompare them.", "Alike.", "Why?", "Colours.")})
    records.append({"id": "text", "data_source": "caption", "conversations": _pairs("Name a shape.", "A circle.")})
    return records, files


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_next(tmp_path_factory, tiny_parts):
    from helpers.tiny_next import assemble_tiny_next

    out = tmp_path_factory.mktemp("inspect_next") / "model"
    assemble_tiny_next(tiny_parts, out)
    return out


def _processor_image_counts(model: Path, files: list[Path]) -> dict[str, int]:
    """Each file's tokens as transformers' processor expands it, on the pixels the host's collator gives it."""
    from test_mm_plugin_next_host import plugin
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    pixels = plugin()._regularize_images([str(path) for path in files], image_max_pixels=768 * 768,
                                         image_min_pixels=32 * 32)["images"]
    return {path.name: processor(text="<image>", images=[image])["input_ids"][0].count(processor.image_token_id)
            for path, image in zip(files, pixels)}


def _text_tokens(model: Path, records: list[dict]) -> list[int]:
    """Each record's tokens with the host's llava_v1 template, each `<image>` as its one placeholder token."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llava_v1"))
    roles = {"human": "user", "gpt": "assistant"}
    return [sum(len(s) + len(t) for s, t in template.encode_pairs(
        tokenizer, [{"role": roles[turn["from"]], "content": turn["value"]} for turn in record["conversations"]],
        None)) for record in records]


def _images_of(record: dict) -> list[str]:
    image = record.get("image", [])
    return [image] if isinstance(image, str) else image


@pytest.mark.slow
def test_next_checkpoint_counts_equal_the_processor_per_record_and_by_data_source(tmp_path, tiny_next):
    records, files = _image_set(tmp_path / "images")
    data = _write(tmp_path / "mixed.json", records)
    result = llava_lf("inspect", data, "--image-folder", tmp_path / "images", "--out", tmp_path / "card",
                      "--model", tiny_next)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    model = card["datasets"][0]["model"]

    per_image = _processor_image_counts(tiny_next, files)
    assert len(set(per_image.values())) >= 8  # the sizes really differ in count
    uses = [per_image[name] for record in records for name in _images_of(record)]
    assert model["image_tokens_per_image_counts"] == {str(k): n for k, n in sorted(Counter(uses).items())}
    text = _text_tokens(tiny_next, records)
    totals = [t + sum(per_image[name] - 1 for name in _images_of(r)) for t, r in zip(text, records)]
    assert model["per_sample_counts"] == {str(k): n for k, n in sorted(Counter(totals).items())}
    assert (model["samples"], model["unknown"], model["keep_100"]) == (len(records), 0, max(totals))

    by_source: dict[str, list[int]] = {}
    for record, total in zip(records, totals):
        by_source.setdefault(record.get("data_source", "(no data_source)"), []).append(total)
    assert {source: (g["samples"], g["keep_100"]) for source, g in model["by_data_source"].items()} == \
        {source: (len(values), max(values)) for source, values in by_source.items()}
    assert card["datasets"][0]["lengths"]["tokens"] is None  # no fixed count per image: the lengths leave tokens out
    assert "Tokens under" in (tmp_path / "card" / "card.md").read_text()
    assert (tmp_path / "card" / "model_tokens.png").stat().st_size > 0


def test_llava_1_5_checkpoint_counts_its_processors_fixed_count(tmp_path, tiny_llava):
    from transformers import AutoProcessor

    records, files = _image_set(tmp_path / "images")
    [card] = inspect_datasets([DatasetInput("mixed", _write(tmp_path / "mixed.json", records))],
                              InspectOptions(image_folder=tmp_path / "images", model=str(tiny_llava)))["datasets"]
    processor = AutoProcessor.from_pretrained(tiny_llava)
    counts = {processor(text="<image>", images=[Image.open(path).convert("RGB")])["input_ids"][0].count(
        processor.image_token_id) for path in files}
    assert len(counts) == 1  # one count whatever the size
    uses = sum(len(_images_of(record)) for record in records)
    assert card["model"]["image_tokens_per_image_counts"] == {str(counts.pop()): uses}
    text = _text_tokens(tiny_llava, records)
    # the lengths table counts the same records the same way (a fixed count per image)
    assert card["lengths"]["tokens"]["per_record"]["total"] == card["model"]["tokens"]["total"]
    assert card["model"]["text_tokens_per_sample"]["total"] == sum(text) - uses


def _hand_set(folder: Path) -> list[dict]:
    """100 records of known tokens under llava1_5_7b without a tokenizer: 576 per image, and an answer of 4n
    characters is n text tokens. 97 records of 600, one of 5,000 (vqa), one of 9,000 (caption), one text-only of 10."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48)).save(folder / "a.jpg")

    def record(n: int, tokens: int, source: str | None, image: bool = True) -> dict:
        question = "<image>" if image else "Name"  # the placeholder is no text; "Name" is one token's 4 characters
        answer = "a" * (4 * (tokens - 576 * image) - (0 if image else 4))
        return ({"id": str(n), "conversations": _pairs(question, answer)}
                | ({"image": "a.jpg"} if image else {}) | ({"data_source": source} if source else {}))

    records = [record(n, 600, "vqa" if n % 2 else None) for n in range(97)]
    return records + [record(97, 5000, "vqa"), record(98, 9000, "caption"), record(99, 10, "caption", image=False)]


def test_cutoff_figures_on_a_set_counted_by_hand(tmp_path):
    records = _hand_set(tmp_path / "images")
    [card] = inspect_datasets([DatasetInput("hand", _write(tmp_path / "hand.json", records))],
                              InspectOptions(image_folder=tmp_path / "images", model="llava1_5_7b",
                                             cutoff_len=5000))["datasets"]
    model = card["model"]
    assert model["cutoffs"] == [2048, 4096, 5000, 8192]
    assert (model["samples"], model["keep_99"], model["keep_100"]) == (100, 5000, 9000)
    assert {c: row["records"] for c, row in model["over"].items()} == {"2048": 2, "4096": 2, "5000": 1, "8192": 1}
    assert model["over"]["2048"]["share"] == 0.02
    assert model["image_tokens_per_image_counts"] == {"576": 99}
    groups = model["by_data_source"]
    assert list(groups) == ["(no data_source)", "vqa", "caption"]  # most records first
    assert {s: (g["samples"], g["keep_99"], g["keep_100"]) for s, g in groups.items()} == {
        "(no data_source)": (49, 600, 600), "vqa": (49, 5000, 5000), "caption": (2, 9000, 9000)}
    assert groups["caption"]["over"]["8192"] == {"records": 1, "share": 0.5}


def test_next_preset_gives_the_worked_examples(tmp_path):
    """llava1_6_vicuna_7b (CLIP-L/336): LLaVA-NeXT's worked examples, as transformers counts them."""
    worked = {(640, 480): 2340, (1024, 899): 2634, (400, 900): 1926, (1000, 250): 1890, (300, 200): 1464}
    folder = tmp_path / "images"
    folder.mkdir()
    records = []
    for (width, height), _ in worked.items():
        Image.new("RGB", (width, height)).save(folder / f"{width}x{height}.png")
        records.append({"id": f"{width}x{height}", "image": f"{width}x{height}.png", "conversations": _pairs(
            "<image>", "Shapes.")})
    [card] = inspect_datasets([DatasetInput("worked", _write(tmp_path / "w.json", records))], InspectOptions(
        image_folder=folder, model="llava1_6_vicuna_7b"))["datasets"]
    assert card["model"]["image_tokens_per_image_counts"] == {str(n): 1 for n in sorted(worked.values())}


def test_bad_model_and_option_clashes_are_named(tmp_path):
    records = _hand_set(tmp_path / "images")
    data = _write(tmp_path / "hand.json", records)
    result = llava_lf("inspect", data, "--out", tmp_path / "card", "--model", "llava9_9")
    assert result.returncode != 0 and "neither a checkpoint folder nor a preset" in result.stderr
    assert "llava1_6_vicuna_7b" in result.stderr  # the presets it knows
    result = llava_lf("inspect", data, "--out", tmp_path / "card", "--model", "llava1_6_vicuna_7b",
                      "--no-image-headers")
    assert result.returncode != 0 and "--no-image-headers" in result.stderr


def test_the_cards_default_cutoff_is_the_hosts():
    import dataclasses

    from llamafactory.hparams import DataArguments

    from llava_lf.data.inspect.model_tokens import HOST_CUTOFF_LEN

    default = {field.name: field.default for field in dataclasses.fields(DataArguments)}["cutoff_len"]
    assert HOST_CUTOFF_LEN == default
