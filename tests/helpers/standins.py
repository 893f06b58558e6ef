"""Tiny stand-ins of the real inputs people assemble from, file for file as released (built here, nothing downloaded).

- `build_vicuna`: lmsys/vicuna-7b-v1.5 in small: a SentencePiece BPE `LlamaTokenizer` (tokenizer.model; unk 0,
  bos 1, eos 2, adds BOS, no pad), fp16 LLaMA weights, `tie_word_embeddings: false`, config `pad_token_id: 0`,
  and Vicuna's generation_config.json byte for byte in content.
- `build_openai_clip`: openai/clip-vit-large-patch14-336 in small: a whole `CLIPModel` (text tower included) in
  pytorch_model.bin with the legacy integer-size `preprocessor_config.json` (`CLIPFeatureExtractor`, bicubic).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

VICUNA_GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
                            "temperature": 0.9, "top_p": 0.6, "transformers_version": "4.31.0"}
VICUNA_TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "clean_up_tokenization_spaces": False,
    "eos_token": "</s>", "legacy": False, "model_max_length": 4096, "pad_token": None, "padding_side": "right",
    "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    "USER: What color is the circle? ASSISTANT: The circle is red.",
    "USER: How many shapes are there in the picture? ASSISTANT: There are two shapes, a square and a triangle.",
    "USER: Describe the image in detail. ASSISTANT: A small blue square sits to the left of a large green circle.",
    "Is there a dog in the image? Answer the question using a single word or phrase. No",
    "Answer with the option's letter from the given choices directly. The answer is A.",
]


def train_sentencepiece(vocab_size: int = 400) -> bytes:
    """A SentencePiece BPE model with LLaMA's special ids (unk 0, bos 1, eos 2, no pad) and byte fallback."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 30), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True, byte_fallback=True,
        hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def write_vicuna_tokenizer(out: Path, vocab_size: int = 400) -> Path:
    """tokenizer.model + tokenizer_config.json + special_tokens_map.json, as Vicuna v1.5 ships them."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(train_sentencepiece(vocab_size))
    (out / "tokenizer_config.json").write_text(json.dumps(VICUNA_TOKENIZER_CONFIG, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    return out


def build_vicuna(out: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A tiny Vicuna v1.5: fp16 LLaMA, untied head, SentencePiece tokenizer, Vicuna's generation config."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    write_vicuna_tokenizer(out)
    vocab = len(AutoTokenizer.from_pretrained(out))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(torch.float16)
    model.config.dtype = torch.float16
    model.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(VICUNA_GENERATION_CONFIG, indent=2))
    return out


def build_openai_clip(out: Path, image_size: int = 42, patch_size: int = 14, seed: int = 0) -> Path:
    """A whole CLIPModel (vision and text towers) in pytorch_model.bin, with openai's legacy processor file."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    vision = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
              "image_size": image_size, "patch_size": patch_size, "projection_dim": 32}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "projection_dim": 32}
    model = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=32))
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": image_size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "size": image_size}, indent=2))
    return out
