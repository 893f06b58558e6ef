"""Tokenising an expanded image run as one token and widening it gives exactly the plain tokenizer's ids."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.host

TEXTS = [
    "USER: " + "<image>" * 576 + "\nWhat is the colour of the bus? ASSISTANT:",
    "<image>" * 9 + "A red circle.\n",
    "Compare " + "<image>" * 4 + " and" + "<image>" * 4 + "\n please",
    "no image here",
    "one <image> only",
    "ends with a run " + "<image>" * 3,
]


def _metaspace_bpe():
    """A LLaMA-style (SentencePiece-like, prefix space on the first piece only) BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    bpe.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    corpus = ["What is the colour of the bus?", "A red circle and a blue square.", "Compare the two pictures please."]
    bpe.train_from_iterator(corpus * 20, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   extra_special_tokens=["<image>"])


@pytest.fixture(scope="module")
def tokenizers(tiny_llava, tmp_path_factory):
    from test_templates import build_golden_processor
    from transformers import AutoTokenizer

    golden = build_golden_processor(tmp_path_factory.mktemp("golden") / "processor").tokenizer
    return {"words": golden, "tiny_llava_bpe": AutoTokenizer.from_pretrained(tiny_llava), "metaspace": _metaspace_bpe()}


@pytest.mark.parametrize("name", ["words", "tiny_llava_bpe", "metaspace"])
def test_runs_tokenise_like_the_plain_path(tokenizers, name):
    from llava_lf.templates.fast_encode import encode_with_image_runs

    tokenizer = tokenizers[name]
    for text in TEXTS:
        assert encode_with_image_runs(tokenizer, text, "<image>") == tokenizer.encode(text, add_special_tokens=False)


def test_a_tokenizer_without_an_image_token_gets_the_plain_path(tokenizers):
    from llava_lf.templates.fast_encode import encode_with_image_runs

    tokenizer = tokenizers["metaspace"]
    text = "x " + "<img>" * 5 + " y"  # not a special token: splicing would be wrong, so it must not happen
    assert encode_with_image_runs(tokenizer, text, "<img>") == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("name", ["words", "metaspace"])
def test_each_run_length_after_another_gives_the_hosts_ids(tokenizers, name):
    """The template tries the last sample's run length first: a longer, shorter, second or later run must still be
    tokenised as the host's slot-by-slot path does, sample after sample."""
    from llamafactory.data.template import TEMPLATES, Template

    tokenizer, template = tokenizers[name], TEMPLATES["llava_v1"]
    for content in ["<image>" * 9 + "\nWhat is the colour?", "<image>" * 10 + "\nWhat is the colour?",
                    "<image>" * 8 + "\nWhat?", "<image>" * 8 + "\nA" + "<image>" * 8, "Look: " + "<image>" * 8,
                    "<image>" * 8 + "\nWhat?"]:  # the last: the same length again, the template's shortest path
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "red"}]
        assert template._encode(tokenizer, messages, None, None) == Template._encode(template, tokenizer, messages,
                                                                                     None, None), content


@pytest.mark.parametrize("name", ["words", "tiny_llava_bpe", "metaspace"])
def test_plain_text_through_the_rust_tokenizer_gives_the_same_ids(tokenizers, name):
    from llava_lf.templates.fast_encode import encode_text

    tokenizer = tokenizers[name]
    for text in [*TEXTS, "A chat between a curious user and an artificial intelligence assistant. "]:
        assert encode_text(tokenizer, text) == tokenizer.encode(text, add_special_tokens=False)


def test_a_rust_tokenizer_left_truncating_is_not_used_directly(tokenizers):
    """transformers' encode resets truncation state it finds; we take its path whenever that state differs."""
    from llava_lf.templates.fast_encode import encode_text

    tokenizer = tokenizers["metaspace"]
    text = "A red circle and a blue square."
    tokenizer._tokenizer.enable_truncation(3)
    try:
        ids = encode_text(tokenizer, text)
    finally:
        tokenizer._tokenizer.no_truncation()
    assert len(ids) > 3 and ids == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("name", ["words", "tiny_llava_bpe", "metaspace"])
def test_the_slot_layout_path_equals_the_hosts_slot_by_slot_path(tokenizers, name):
    """`LlavaTemplate._encode` lays the slots out once; the host's generic `_encode` must give the same ids."""
    from llamafactory.data.template import TEMPLATES, Template

    tokenizer = tokenizers[name]
    template = TEMPLATES["llava_v1"]
    conversations = [
        [{"role": "user", "content": "<image>" * 9 + "\nWhat is the colour of the bus?"},
         {"role": "assistant", "content": "red"}, {"role": "user", "content": "And now?"},
         {"role": "assistant", "content": "blue please"}],
        [{"role": "user", "content": "no image here"}, {"role": "assistant", "content": ""}],
    ]
    for messages in conversations:
        for system in (None, "Be brief.", ""):
            assert template._encode(tokenizer, messages, system, None) == Template._encode(template, tokenizer,
                                                                                          messages, system, None)
