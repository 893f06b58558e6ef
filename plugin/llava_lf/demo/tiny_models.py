"""Tiny CLIP-style vision tower and LLaMA-style language model, built from config (no download)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llava_lf.formats import PAD_TOKEN


@dataclass(frozen=True)
class TinyDims:
    image_size: int = 48
    patch_size: int = 16
    vision_hidden: int = 96
    vision_layers: int = 2
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vocab_size: int = 512


def train_tokenizer(texts: Iterable[str], vocab_size: int, words: Iterable[str] = (), with_pad: bool = True):
    """A byte-level BPE tokenizer trained on the synthetic text, with LLaMA's <s>/</s>/<unk>.

    `words` become single tokens (the demo's cell words, so one picture patch lines up with one word).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"] + ([PAD_TOKEN] if with_pad else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    # A pad token of its own: were pad the same as </s>, the host's `stage: pt` collator would mask every
    # </s> out of the labels, and the model would never learn to end an answer.
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token=PAD_TOKEN if with_pad else None)
    fast.add_tokens(list(words))
    return fast


def build_vision_tower(dims: TinyDims, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=dims.vision_hidden,
        intermediate_size=dims.vision_hidden * 2,
        num_hidden_layers=dims.vision_layers,
        num_attention_heads=4,
        image_size=dims.image_size,
        patch_size=dims.patch_size,
        projection_dim=dims.vision_hidden,
    )
    CLIPVisionModel(config).save_pretrained(out)
    side = dims.image_size
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(out)
    return out


def build_language_model(dims: TinyDims, tokenizer, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=dims.text_hidden,
        intermediate_size=dims.text_hidden * 2,
        num_hidden_layers=dims.text_layers,
        num_attention_heads=dims.text_heads,
        num_key_value_heads=dims.text_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
