"""The image-token count comes from the processor config, equals the host's, and opens no image."""

from __future__ import annotations

import pytest


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

    from llava_lf.image_tokens import image_seqlen_from_config

    image_processor = SimpleNamespace(do_center_crop=True, crop_size={"height": 336, "width": 336})
    processor = SimpleNamespace(image_processor=image_processor, patch_size=14, num_additional_image_tokens=extra,
                                vision_feature_select_strategy=strategy)
    assert image_seqlen_from_config(processor) == expected


def test_unfixed_size_falls_back_to_none():
    from types import SimpleNamespace

    from llava_lf.image_tokens import image_seqlen_from_config

    image_processor = SimpleNamespace(do_center_crop=False, do_resize=True, size={"shortest_edge": 336})
    processor = SimpleNamespace(image_processor=image_processor, patch_size=14, num_additional_image_tokens=1,
                                vision_feature_select_strategy="default")
    assert image_seqlen_from_config(processor) is None
