"""Inference sees the prompts training saw: the host's chat engine, and the saved processor's chat template.

`llamafactory-cli chat`, `webchat` and `api` all build prompts with `HuggingfaceEngine._process_args`
(webchat and the API send the image apart from the text, so the engine puts `<image>` in front of it);
llava-hf style code calls `processor.apply_chat_template`. Each must give the ids training gave.
"""

from __future__ import annotations

import pytest
from test_templates import IGNORE, build_golden_processor, encode_like_training, write_image

pytestmark = pytest.mark.host

CONVERSATION = [{"role": "user", "content": "<image>\nWhat color is the circle?"}, {"role": "assistant", "content": "red"},
                {"role": "user", "content": "How many shapes are there?"}, {"role": "assistant", "content": "2"}]
PARTS = [  # the same conversation in llava-hf's content-part form, image after the text as some clients send it
    {"role": "user", "content": [{"type": "text", "text": "What color is the circle?"}, {"type": "image"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    {"role": "user", "content": [{"type": "text", "text": "How many shapes are there?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "2"}]},
]


def _prompt_of(input_ids: list[int], labels: list[int]) -> list[int]:
    """Training ids without the last answer (its trailing labelled span): what a chat prompt must equal."""
    end = len(labels)
    while end and labels[end - 1] != IGNORE:
        end -= 1
    return input_ids[:end]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    return build_golden_processor(folder / "processor"), write_image(folder / "red.png")


@pytest.mark.timeout(120)
def test_chat_engine_prompts_match_training(tiny_llava, demo_data):
    from llamafactory.chat import ChatModel
    from llamafactory.chat.hf_engine import HuggingfaceEngine

    data, _ = demo_data
    image = str(min(data.image_dir.iterdir()))
    chat = ChatModel({"model_name_or_path": str(tiny_llava), "template": "llava_v1", "infer_backend": "huggingface",
                      "max_new_tokens": 3, "do_sample": False})
    engine = chat.engine
    input_ids, labels = encode_like_training(engine.processor, "llava_v1", CONVERSATION, [image])

    # As webchat and the API call it: the image apart, no placeholder in the text.
    history = [{"role": "user", "content": "What color is the circle?"}, {"role": "assistant", "content": "red"},
               {"role": "user", "content": "How many shapes are there?"}]
    gen_kwargs, _ = HuggingfaceEngine._process_args(engine.model, engine.tokenizer, engine.processor, engine.template,
                                                    engine.generating_args, [dict(m) for m in history], images=[image])
    assert gen_kwargs["inputs"][0].tolist() == _prompt_of(input_ids, labels)

    one_turn_ids, one_turn_labels = encode_like_training(engine.processor, "llava_v1", CONVERSATION[:2], [image])
    gen_kwargs, _ = HuggingfaceEngine._process_args(engine.model, engine.tokenizer, engine.processor, engine.template,
                                                    engine.generating_args, [dict(history[0])], images=[image])
    assert gen_kwargs["inputs"][0].tolist() == _prompt_of(one_turn_ids, one_turn_labels)
    # And the whole path generates (the collator-side image check runs on the inference batch too).
    assert len(chat.chat([dict(history[0])], images=[image])) == 1


def test_processor_chat_template_renders_the_training_string(tiny_llava, demo_data):
    """The assembler saves `LLAVA_V1_CHAT_TEMPLATE`; llava-hf style code gets the training ids from it."""
    from PIL import Image
    from transformers import AutoProcessor

    data, _ = demo_data
    image = str(min(data.image_dir.iterdir()))
    processor = AutoProcessor.from_pretrained(tiny_llava)
    input_ids, labels = encode_like_training(processor, "llava_v1", CONVERSATION, [image])
    assert input_ids[0] == processor.tokenizer.bos_token_id  # the template leaves BOS to the tokenizer
    training_text = processor.tokenizer.decode(input_ids[1:]).replace("<image>" * 9, "<image>")

    assert processor.apply_chat_template(CONVERSATION, tokenize=False) == training_text
    assert processor.apply_chat_template(PARTS, tokenize=False) == training_text
    with_image = [{**PARTS[0], "content": [PARTS[0]["content"][0], {"type": "image", "image": Image.open(image)}]},
                  *PARTS[1:3]]
    prompt = processor.apply_chat_template(with_image, tokenize=True, return_dict=True)
    assert list(prompt["input_ids"][0]) == _prompt_of(input_ids, labels)


def test_host_fixed_tokenizers_get_the_exact_jinja(golden):
    """A tokenizer without a chat template gets ours from the host's setup (llava_v1) - and the plain one renders too."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from llava_lf.formats import LLAVA_PLAIN_CHAT_TEMPLATE, LLAVA_V1_CHAT_TEMPLATE

    processor, image = golden
    tokenizer = processor.tokenizer
    tokenizer.chat_template = None
    get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llava_v1"))
    assert tokenizer.chat_template == LLAVA_V1_CHAT_TEMPLATE
    input_ids, _ = encode_like_training(processor, "llava_v1", CONVERSATION, [image])
    rendered = tokenizer.apply_chat_template(PARTS, tokenize=False)
    assert rendered == tokenizer.decode(input_ids[1:]).replace("<image>" * 9, "<image>")  # BOS: the tokenizer's

    caption = [{"role": "user", "content": "Describe the image.\n<image>"}, {"role": "assistant", "content": "A red circle."}]
    plain_ids, _ = encode_like_training(processor, "llava_plain", caption, [image])
    rendered = tokenizer.apply_chat_template(caption, tokenize=False, chat_template=LLAVA_PLAIN_CHAT_TEMPLATE)
    assert rendered == tokenizer.decode(plain_ids[1:]).replace("<image>" * 9, "<image>") == "<image>A red circle.\n"


def _sentencepiece_style_processor(folder):
    """A LLaMA-style tokenizer with SentencePiece's legacy prefix (every piece gets `▁`, as LLaVA-1.5 trained)."""
    from test_templates import save_tiny_processor
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    bpe.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    corpus = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions. USER: What color is the circle? ASSISTANT: red "
              "How many shapes are there? 2")
    bpe.train_from_iterator([corpus] * 50, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])  # adds BOS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<unk>", extra_special_tokens=["<image>"])
    return save_tiny_processor(tokenizer, folder)


def test_sentencepiece_style_tokenizer_gets_the_training_ids_from_the_chat_template(golden, tmp_path):
    from PIL import Image

    _, image = golden
    processor = _sentencepiece_style_processor(tmp_path / "processor")
    input_ids, labels = encode_like_training(processor, "llava_v1", CONVERSATION, [image])
    assert processor.tokenizer.convert_ids_to_tokens(input_ids[:3]) == ["<s>", "\u2581A", "\u2581chat"]
    with_image = [{**PARTS[0], "content": [PARTS[0]["content"][0], {"type": "image", "image": Image.open(image)}]},
                  *PARTS[1:3]]
    prompt = processor.apply_chat_template(with_image, tokenize=True, return_dict=True)
    assert list(prompt["input_ids"][0]) == _prompt_of(input_ids, labels)
