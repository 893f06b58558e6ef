"""LLaVA-NeXT's conversation formats, token-exact: the text each template makes and what training labels, written out
by hand from LLaVA-NeXT's `conversation.py` and its `preprocess_llama_2` / `preprocess_mpt` / `preprocess_llama3`,
through the host's own SFT encoding. Each tokenizer is built here from a word vocabulary with the format's special
tokens, so the decoded ids are exactly the rendered text."""

from __future__ import annotations

import pytest
from helpers.host_runs import bound_to_run
from test_templates import IGNORE, _turns, save_tiny_processor, write_image

pytestmark = pytest.mark.host

WORDS = ["What", "is", "it?", "A", "circle.", "And", "the", "colour?", "Red.", "Answer", "questions.", "system",
         "user", "assistant", "You", "are", "a", "helpful", "language", "and", "vision", "assistant.", "able", "to",
         "understand", "visual", "content", "that", "provides,", "assist", "with", "variety", "of", "tasks", "using",
         "natural", "language.", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "Be", "brief."]
IMAGE = "<image>" * 9  # the tiny 48-px tower in 16-px patches
LLAMA_3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                  "that the user provides, and assist the user with a variety of tasks using natural language.")


def word_processor(folder, specials: list[str], bos: str, eos: str):
    """A LlavaProcessor over a word tokenizer: each word, space, newline (and "\\n\\n") and special token is one id."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<unk>", "<pad>", "<image>", bos, eos, *specials, " ", "\n",
                                                        "\n\n", *WORDS])}
    words = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n\n|\s"), behavior="isolated")
    words.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, bos_token=bos, eos_token=eos, unk_token="<unk>",
                                        pad_token="<pad>", extra_special_tokens=["<image>", *specials])
    return save_tiny_processor(tokenizer, folder)


def encode_like_training(processor, template_name: str, messages, images, system: str | None = None):
    """input_ids and labels as `llamafactory-cli train` makes them (the host's SFT processor)."""
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    data_args = DataArguments(template=template_name, cutoff_len=1024)
    template = bound_to_run(get_template_and_fix_tokenizer(processor.tokenizer, data_args), 1024, name=template_name)
    host = SupervisedDatasetProcessor(template=template, tokenizer=processor.tokenizer, processor=processor,
                                      data_args=data_args)
    return host._encode_data_example(prompt=messages[:-1], response=messages[-1:], system=system, tools=None,
                                     images=images, videos=[], audios=[])


def rendered(processor, template: str, messages, images, system: str | None = None) -> tuple[str, str]:
    """(the whole text, the labelled tokens' text) as `llamafactory-cli train` encodes the sample."""
    input_ids, labels = encode_like_training(processor, template, messages, images, system=system)
    decode = processor.tokenizer.decode
    assert not any(label != IGNORE and label != token for token, label in zip(input_ids, labels))
    return decode(input_ids), decode([token for token, label in zip(input_ids, labels) if label != IGNORE])


CONVERSATION = ("What is it?\n<image>", "A circle.", "And the colour?", "Red.")


def test_llava_mistral_instruct(tmp_path):
    processor = word_processor(tmp_path / "p", [], "<s>", "</s>")
    text, labelled = rendered(processor, "llava_mistral_instruct", _turns(*CONVERSATION), [write_image(tmp_path / "i.png")])
    # LLAMA_2 style, sep2 </s>: a space before [/INST] and before </s>, no system
    assert text == f"<s>[INST] {IMAGE}\nWhat is it? [/INST] A circle. </s>[INST] And the colour? [/INST] Red. </s>"
    assert labelled == " A circle. </s> Red. </s>"
    with_system, _ = rendered(processor, "llava_mistral_instruct", _turns("What is it?", "A circle."), [],
                              system="Be brief.")
    assert with_system == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is it? [/INST] A circle. </s>"


def test_llava_chatml_direct(tmp_path):
    processor = word_processor(tmp_path / "p", ["<|im_start|>", "<|im_end|>"], "<|startoftext|>", "<|endoftext|>")
    text, labelled = rendered(processor, "llava_chatml_direct", _turns(*CONVERSATION), [write_image(tmp_path / "i.png")])
    # MPT style: the system prompt always there, no newline after <|im_end|>; answers and their <|im_end|> labelled
    assert text == (f"<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n{IMAGE}\nWhat is it?"
                    "<|im_end|><|im_start|>assistant\nA circle.<|im_end|><|im_start|>user\nAnd the colour?<|im_end|>"
                    "<|im_start|>assistant\nRed.<|im_end|>")
    assert labelled == "A circle.<|im_end|>Red.<|im_end|>"


def test_llava_llama_3(tmp_path):
    specials = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    processor = word_processor(tmp_path / "p", specials, "<|begin_of_text|>", "<|end_of_text|>")
    text, labelled = rendered(processor, "llava_llama_3", _turns(*CONVERSATION), [write_image(tmp_path / "i.png")])
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert text == ("<|begin_of_text|>" + header.format("system") + LLAMA_3_SYSTEM + "<|eot_id|>"
                    + header.format("user") + f"{IMAGE}\nWhat is it?<|eot_id|>"
                    + header.format("assistant") + "A circle.<|eot_id|>"
                    + header.format("user") + "And the colour?<|eot_id|>"
                    + header.format("assistant") + "Red.<|eot_id|>")
    # preprocess_llama3: assistant messages whole (header included); elsewhere only the unmasked tokens
    specials_only = "<|start_header_id|><|end_header_id|>\n\n<|eot_id|>"
    assert labelled == ("<|begin_of_text|>" + specials_only + specials_only
                        + header.format("assistant") + "A circle.<|eot_id|>" + specials_only
                        + header.format("assistant") + "Red.<|eot_id|>")


@pytest.mark.parametrize("template", ["llava_mistral_instruct", "llava_chatml_direct", "llava_llama_3"])
def test_generation_prompt_ends_where_the_answer_starts(tmp_path, template):
    """Inference (encode_oneturn) gives the prompt LLaVA-NeXT's inference gives: the answer is what follows."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    specials = {"llava_chatml_direct": ["<|im_start|>", "<|im_end|>"],
                "llava_llama_3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}.get(template, [])
    processor = word_processor(tmp_path / "p", specials, "<s>", "</s>")
    host_template = get_template_and_fix_tokenizer(processor.tokenizer, DataArguments(template=template))
    prompt, _ = host_template.encode_oneturn(processor.tokenizer, _turns("What is it?", ""))
    ending = {"llava_mistral_instruct": "What is it? [/INST]",
              "llava_chatml_direct": "What is it?<|im_end|><|im_start|>assistant\n",
              "llava_llama_3": "What is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"}[template]
    assert processor.tokenizer.decode(prompt).endswith(ending)
