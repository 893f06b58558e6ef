"""The llava_lf mm plugin on a LLaVA-NeXT processor, with real image files of mixed shapes: each image's tokens come
from its header (no decode) and equal what transformers' LlavaNextProcessor expands the collator's pixels to; the
collator keeps whole images only."""

from __future__ import annotations

import pytest
from test_mm_plugin_next import next_processor

pytestmark = pytest.mark.host

# (width, height): under the host's 32*32 floor, one tile, under a tile (the 1x2 / 2x1 tie), wide 3:1, tall 1:3,
# a rounding edge case, odd sizes, and two over the host's 768*768 ceiling (resized before the processor sees them)
SHAPES = ((20, 14), (336, 336), (300, 200), (1000, 330), (330, 1000), (110, 352), (97, 611), (900, 700), (352, 1949))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("next_images")
    paths = []
    for index, (width, height) in enumerate(SHAPES):
        path = folder / f"{width}x{height}.{'jpg' if index % 2 else 'png'}"
        Image.new("RGB", (width, height), (index * 20, 90, 200)).save(path)
        paths.append(str(path))
    return paths


def plugin():
    from llamafactory.data.mm_plugin import get_mm_plugin

    import llava_lf.host.registration  # noqa: F401  registers the plugin

    return get_mm_plugin(name="llava_lf", image_token="<image>")


@pytest.mark.slow
def test_each_image_counts_what_the_processor_expands_the_collators_pixels_to(image_files, monkeypatch):
    from PIL import ImageFile

    processor = next_processor(336, 14)
    processor.image_max_pixels, processor.image_min_pixels = 768 * 768, 32 * 32
    mm_plugin = plugin()
    opened = []
    load = ImageFile.ImageFile.load  # what decodes a file's pixels (PNG and JPEG alike)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: opened.append(self) or load(self))
    messages = [{"role": "user", "content": "<image>" * len(image_files) + "Compare them."},
                {"role": "assistant", "content": "Alike."}]
    expanded = mm_plugin.process_messages(messages, image_files, [], [], processor)
    assert not opened, "tokenising decoded an image"
    monkeypatch.undo()
    got = []
    for path in image_files:  # one image at a time: the counts of the runs in order
        single = mm_plugin.process_messages([{"role": "user", "content": "<image>"}], [path], [], [], processor)
        got.append(single[0]["content"].count("<image>"))
    assert expanded[0]["content"] == "".join("<image>" * count for count in got) + "Compare them."

    pixels = mm_plugin._regularize_images(image_files, image_max_pixels=768 * 768, image_min_pixels=32 * 32)["images"]
    expected = [processor(text="<image>", images=[image])["input_ids"][0].count(processor.image_token_id)
                for image in pixels]
    assert got == expected
    assert len(set(got)) >= 6  # the shapes really differ in count


def test_collator_keeps_whole_images_and_refuses_a_cut_one(image_files):
    from llava_lf.errors import LlavaLfError

    processor = next_processor(336, 14)
    mm_plugin = plugin()
    counts = [mm_plugin.process_messages([{"role": "user", "content": "<image>"}], [path], [], [], processor)[0]
              ["content"].count("<image>") for path in image_files[:3]]
    image_id = processor.image_token_id
    # row 0 kept both its images, row 1 was trimmed to its first one
    batch_ids = [[5] + [image_id] * (counts[0] + counts[1]), [image_id] * counts[2] + [5]]
    inputs = mm_plugin.get_mm_inputs(image_files[:3] + image_files[:1], [], [], [2, 2], [0, 0], [0, 0], batch_ids,
                                     processor)
    assert inputs["image_sizes"].tolist() == [[26, 38], [336, 336], [200, 300]]  # 20x14 raised to the 32*32 floor
    with pytest.raises(LlavaLfError, match="part of an image was cut"):
        mm_plugin.get_mm_inputs(image_files[:1], [], [], [1], [0], [0], [[image_id] * (counts[0] - 1)], processor)


@pytest.mark.parametrize(("template", "expected"), [
    ("llava_plain", "<s>{image}A red circle.\n"),
    ("llava_v1", "<s>{system} USER: {image}\nDescribe the image. ASSISTANT: A red circle.</s>"),
])
def test_llava_v1_and_plain_follow_a_next_processor(tmp_path, template, expected):
    """The same templates on a LLaVA-NeXT processor: the image run is the processor's AnyRes count."""
    from test_mm_plugin_next import processor_count
    from test_templates import SYSTEM_TEXT, _turns, build_golden_processor, encode_like_training
    from transformers import LlavaNextProcessor

    words = build_golden_processor(tmp_path / "words").tokenizer
    tiny = next_processor(48, 16)
    processor = LlavaNextProcessor(image_processor=tiny.image_processor, tokenizer=words, patch_size=16,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    from PIL import Image

    image = tmp_path / "wide.png"
    Image.new("RGB", (150, 50), (200, 30, 30)).save(image)
    input_ids, _ = encode_like_training(processor, template, _turns("Describe the image.\n<image>", "A red circle."),
                                        [str(image)])
    count = processor_count(processor, 150, 50)
    assert count == 39
    assert words.decode(input_ids) == expected.format(image="<image>" * count, system=SYSTEM_TEXT)
