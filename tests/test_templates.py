"""Golden tests: exact rendered strings, token ids and label masks, through the host's own encoding path.

The tokenizer is built here from a hand-written vocabulary: every word, space and newline is one token, so
each expected id below is read off `VOCAB` by hand (and the decoded string is exactly the rendered text).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.host_runs import bound_to_run

pytestmark = pytest.mark.host

IGNORE = -100
VOCAB = {
    "<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 3, "<pad>": 4, " ": 5, "\n": 6, "USER:": 7, "ASSISTANT:": 8,
    "A": 9, "chat": 10, "between": 11, "a": 12, "curious": 13, "user": 14, "and": 15, "an": 16, "artificial": 17,
    "intelligence": 18, "assistant.": 19, "The": 20, "assistant": 21, "gives": 22, "helpful,": 23,
    "detailed,": 24, "polite": 25, "answers": 26, "to": 27, "the": 28, "user's": 29, "questions.": 30,
    "What": 31, "color": 32, "is": 33, "circle?": 34, "red": 35, "How": 36, "many": 37, "shapes": 38, "are": 39,
    "there?": 40, "2": 41, "Hello": 42, "Hi": 43, "circle.": 44, "Describe": 45, "image.": 46,
}
SYSTEM_TEXT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
               "helpful, detailed, and polite answers to the user's questions.")
# "A chat between ... questions." word by word, a space (5) between words.
SYSTEM_IDS = [9, 5, 10, 5, 11, 5, 12, 5, 13, 5, 14, 5, 15, 5, 16, 5, 17, 5, 18, 5, 19, 5, 20, 5, 21, 5, 22, 5, 23, 5,
              24, 5, 15, 5, 25, 5, 26, 5, 27, 5, 28, 5, 29, 5, 30]
IMAGE_IDS = [3] * 9  # a 48 px image in 16 px patches: 3 x 3, CLS dropped
Q1_IDS = [31, 5, 32, 5, 33, 5, 28, 5, 34]  # What color is the circle?
Q2_IDS = [36, 5, 37, 5, 38, 5, 39, 5, 40]  # How many shapes are there?


def build_golden_processor(folder: Path):
    """A LlavaProcessor (CLIP image processor: 48 px, patch 16) over the hand-written word tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s"), behavior="isolated")
    words.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", extra_special_tokens=["<image>"])
    return save_tiny_processor(tokenizer, folder)


def save_tiny_processor(tokenizer, folder: Path):
    """`tokenizer` with a CLIP image processor (48 px, patch 16: nine image tokens) as a saved LlavaProcessor."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    from llava_lf.formats import LLAVA_V1_CHAT_TEMPLATE

    image_processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=16,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_V1_CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return processor


def write_image(path: Path) -> str:
    from PIL import Image

    Image.new("RGB", (48, 48), (200, 30, 30)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    return build_golden_processor(folder / "processor"), write_image(folder / "red.png")


def encode_like_training(processor, template_name: str, messages, images, cutoff_len: int = 1024):
    """input_ids and labels as `llamafactory-cli train` makes them (the host's SFT processor)."""
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    data_args = DataArguments(template=template_name, cutoff_len=cutoff_len)
    template = get_template_and_fix_tokenizer(processor.tokenizer, data_args)
    template = bound_to_run(template, cutoff_len, name=template_name)  # as the host's loader hands it over
    host = SupervisedDatasetProcessor(template=template, tokenizer=processor.tokenizer, processor=processor,
                                      data_args=data_args)
    return host._encode_data_example(prompt=messages[:-1], response=messages[-1:], system=None, tools=None,
                                     images=images, videos=[], audios=[])


def _turns(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user" if index % 2 == 0 else "assistant", "content": text} for index, text in enumerate(texts)]


@pytest.mark.parametrize("question", ["<image>\nWhat color is the circle?", "What color is the circle?\n<image>",
                                      "<image>What color is the circle? "])
def test_llava_v1_one_turn(golden, question):
    processor, image = golden
    input_ids, labels = encode_like_training(processor, "llava_v1", _turns(question, "red"), [image])
    prompt = [1, *SYSTEM_IDS, 5, 7, 5, *IMAGE_IDS, 6, *Q1_IDS, 5, 8]
    assert processor.tokenizer.decode(input_ids) == (
        f"<s>{SYSTEM_TEXT} USER: {'<image>' * 9}\nWhat color is the circle? ASSISTANT: red</s>")
    assert input_ids == [*prompt, 5, 35, 2]
    assert labels == [IGNORE] * len(prompt) + [5, 35, 2]  # " red</s>": the answer and its </s>, nothing else


def test_llava_v1_multi_turn(golden):
    processor, image = golden
    messages = _turns("<image>\nWhat color is the circle?", "red", "How many shapes are there?", "2")
    input_ids, labels = encode_like_training(processor, "llava_v1", messages, [image])
    prompt_1 = [1, *SYSTEM_IDS, 5, 7, 5, *IMAGE_IDS, 6, *Q1_IDS, 5, 8]
    prompt_2 = [7, 5, *Q2_IDS, 5, 8]
    assert processor.tokenizer.decode(input_ids) == (
        f"<s>{SYSTEM_TEXT} USER: {'<image>' * 9}\nWhat color is the circle? ASSISTANT: red</s>"
        "USER: How many shapes are there? ASSISTANT: 2</s>")
    assert input_ids == [*prompt_1, 5, 35, 2, *prompt_2, 5, 41, 2]
    assert labels == [IGNORE] * len(prompt_1) + [5, 35, 2] + [IGNORE] * len(prompt_2) + [5, 41, 2]


def test_llava_v1_text_only(golden):
    processor, _ = golden
    input_ids, labels = encode_like_training(processor, "llava_v1", _turns("Hello", "Hi"), [])
    prompt = [1, *SYSTEM_IDS, 5, 7, 5, 42, 5, 8]
    assert processor.tokenizer.decode(input_ids) == f"<s>{SYSTEM_TEXT} USER: Hello ASSISTANT: Hi</s>"
    assert input_ids == [*prompt, 5, 43, 2]
    assert labels == [IGNORE] * len(prompt) + [5, 43, 2]


def test_llava_plain_keeps_only_the_image_and_caption(golden):
    processor, image = golden
    for _ in range(2):  # a second sample must render the same (no state leaks between samples)
        input_ids, labels = encode_like_training(processor, "llava_plain",
                                                 _turns("Describe the image.\n<image>", "A red circle."), [image])
        assert processor.tokenizer.decode(input_ids) == "<s>" + "<image>" * 9 + "A red circle.\n"
        assert input_ids == [1, *IMAGE_IDS, 9, 5, 35, 5, 44, 6]
        assert labels == [IGNORE] * 10 + [9, 5, 35, 5, 44, 6]  # the caption and its newline only


def test_llava_plain_refuses_other_turns_naming_the_fix(golden):
    from llava_lf.errors import LlavaLfError

    processor, image = golden
    messages = [{"role": "user", "content": "<image>Look."}, {"role": "function", "content": "lookup()"},
                {"role": "assistant", "content": "A red circle."}]
    with pytest.raises(LlavaLfError, match=r"turn 2 has role 'function' \('lookup\(\)'\).*--template llava_plain"):
        encode_like_training(processor, "llava_plain", messages, [image])


def test_tiny_llava_tokenizer_renders_vicuna_v1(tiny_llava, demo_data):
    """The same rendering with the BPE tokenizer of an assembled checkpoint (no hand-written vocabulary)."""
    from transformers import AutoProcessor

    data, _ = demo_data
    processor = AutoProcessor.from_pretrained(tiny_llava)
    image = str(next(data.image_dir.iterdir()))
    messages = _turns("<image>\nWhat color is the circle?", "red", "How many shapes are there?", "2")
    input_ids, labels = encode_like_training(processor, "llava_v1", messages, [image])
    tokenizer = processor.tokenizer
    assert tokenizer.decode(input_ids) == (
        f"<s>{SYSTEM_TEXT} USER: {'<image>' * 9}\nWhat color is the circle? ASSISTANT: red</s>"
        "USER: How many shapes are there? ASSISTANT: 2</s>")
    assert tokenizer.decode([i for i, label in zip(input_ids, labels) if label != IGNORE]) == " red</s> 2</s>"
