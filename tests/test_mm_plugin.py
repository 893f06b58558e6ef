"""The image-token count comes from the processor config, equals the host's, and opens no image."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def processor(tiny_llava):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_llava)


def test_count_matches_the_host_llava_plugin(processor, demo_data):
    from llamafactory.data.mm_plugin import get_mm_plugin

    data, _ = demo_data
    image = str(next(data.image_dir.iterdir()))
    messages = [{"role": "user", "content": "<image>\nWhat is this?"}, {"role": "assistant", "content": "x"}]
    ours = get_mm_plugin("llava_lf", image_token="<image>").process_messages(messages, [image], [], [], processor)
    host = get_mm_plugin("llava", image_token="<image>").process_messages(messages, [image], [], [], processor)
    assert ours == host
    assert ours[0]["content"].count("<image>") == 9


def test_no_image_is_opened_during_tokenisation(processor, tmp_path):
    from llamafactory.data.mm_plugin import get_mm_plugin

    missing = str(tmp_path / "not-there.jpg")  # the host's plugin would have to open it
    messages = [{"role": "user", "content": "<image>\nQ"}, {"role": "assistant", "content": "A"}]
    ours = get_mm_plugin("llava_lf", image_token="<image>").process_messages(messages, [missing], [], [], processor)
    assert ours[0]["content"].startswith("<image>" * 9 + "\n")
    with pytest.raises(FileNotFoundError):
        get_mm_plugin("llava", image_token="<image>").process_messages(messages, [missing], [], [], processor)


@pytest.mark.parametrize(("strategy", "extra", "expected"), [("default", 1, 576), ("full", 1, 577), ("full", 0, 576)])
def test_count_for_llava_1_5_shapes(strategy, extra, expected):
    from types import SimpleNamespace

    from llava_lf.common.image_tokens import image_seqlen_from_config

    image_processor = SimpleNamespace(do_center_crop=True, crop_size={"height": 336, "width": 336})
    processor = SimpleNamespace(image_processor=image_processor, patch_size=14, num_additional_image_tokens=extra,
                                vision_feature_select_strategy=strategy)
    assert image_seqlen_from_config(processor) == expected


def test_unfixed_size_falls_back_to_none():
    from types import SimpleNamespace

    from llava_lf.common.image_tokens import image_seqlen_from_config

    image_processor = SimpleNamespace(do_center_crop=False, do_resize=True, size={"shortest_edge": 336})
    processor = SimpleNamespace(image_processor=image_processor, patch_size=14, num_additional_image_tokens=1,
                                vision_feature_select_strategy="default")
    assert image_seqlen_from_config(processor) is None


@pytest.mark.parametrize("content", ["What is this?\n<image>", "<image>What is this?", "  <image>\n What is this? "])
def test_a_single_image_goes_first_as_llava_does(processor, content):
    """LLaVA's preprocessing (and our converter) put the image first: `<image>\\n{text}`; chat requests too."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "fine"},
                {"role": "user", "content": "Now <image> and <image>"}, {"role": "assistant", "content": "same"}]
    ours = get_mm_plugin("llava_lf", image_token="<image>").process_messages(messages, ["unused.png"] * 3, [], [],
                                                                             processor)
    assert ours[0]["content"] == "<image>" * 9 + "\nWhat is this?"
    assert ours[2]["content"] == "Now " + "<image>" * 9 + " and " + "<image>" * 9  # several images stay in place


def _batch_inputs(golden_processor, image: str, rows: list[list[int]], imglens: list[int]):
    from llamafactory.data.mm_plugin import get_mm_plugin

    plugin = get_mm_plugin("llava_lf", image_token="<image>")
    images = [image] * sum(imglens)
    return plugin.get_mm_inputs(images, [], [], imglens, [0] * len(rows), [0] * len(rows), rows, golden_processor)


def test_collator_leaves_out_images_of_dropped_samples(tmp_path):
    from test_templates import build_golden_processor, write_image

    processor = build_golden_processor(tmp_path / "processor")
    image = write_image(tmp_path / "red.png")
    whole, dropped, text_only = [1, *[3] * 9, 6, 31], [1], [1, 42]
    inputs = _batch_inputs(processor, image, [whole, dropped, text_only, whole], [1, 1, 0, 1])
    assert tuple(inputs["pixel_values"].shape) == (2, 3, 48, 48)  # the two whole images; none for the dropped row
    assert "pixel_values" not in _batch_inputs(processor, image, [dropped, dropped], [1, 1])


def test_collator_refuses_a_row_with_part_of_an_image(tmp_path):
    from test_templates import build_golden_processor, write_image

    from llava_lf.errors import LlavaLfError

    processor = build_golden_processor(tmp_path / "processor")
    image = write_image(tmp_path / "red.png")
    with pytest.raises(LlavaLfError, match=r"batch row 1 holds 5 image tokens .* part of an image was cut"):
        _batch_inputs(processor, image, [[1, *[3] * 9], [1, *[3] * 5]], [1, 1])


def test_pad_to_square_without_crop_is_counted_from_config(tmp_path):
    """LLaVA-1.5's pad-to-square processor (as the assembler may save it) with a shortest-edge resize only."""
    from llamafactory.data.mm_plugin import get_mm_plugin
    from PIL import Image
    from test_templates import build_golden_processor
    from transformers import LlavaImageProcessor

    from llava_lf.common.image_tokens import image_seqlen_from_config

    processor = build_golden_processor(tmp_path / "processor")
    processor.image_processor = LlavaImageProcessor(do_pad=True, do_center_crop=False, size={"shortest_edge": 48})
    wide = tmp_path / "wide.png"
    Image.new("RGB", (80, 30), (10, 200, 10)).save(wide)
    messages = [{"role": "user", "content": "<image>\nQ"}, {"role": "assistant", "content": "A"}]
    assert image_seqlen_from_config(processor) == 9
    ours = get_mm_plugin("llava_lf", image_token="<image>").process_messages(messages, [str(wide)], [], [], processor)
    host = get_mm_plugin("llava", image_token="<image>").process_messages(messages, [str(wide)], [], [], processor)
    assert ours == host


def test_a_miscounted_sample_after_a_good_one_gets_the_hosts_error(processor):
    """The input check runs once per processor and the placeholder count inside the expansion pass: a later sample
    with a placeholder too many, or a video placeholder, still stops with the host's own message."""
    from llamafactory.data.mm_plugin import get_mm_plugin

    plugin = get_mm_plugin("llava_lf", image_token="<image>")
    good = [{"role": "user", "content": "<image>\nQ"}, {"role": "assistant", "content": "A"}]
    assert plugin.process_messages(good, ["a.png"], [], [], processor)[0]["content"].count("<image>") == 9
    for content, problem in (("<image> and <image>", "number of images does not match"),
                             ("<image>\n<video>", "number of videos does not match")):
        bad = [{"role": "user", "content": content}, {"role": "assistant", "content": "A"}]
        with pytest.raises(ValueError, match=problem):
            plugin.process_messages(bad, ["a.png"], [], [], processor)
    with pytest.raises(ValueError, match="Processor was not found"):
        plugin.process_messages(good, ["a.png"], [], [], None)
