"""The language side: which causal LMs HF Llava hosts here, the tokenizer's `<image>`/pad tokens, and the
embedding rows they need (padded to a multiple, new rows near the mean of the old ones)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llava_lf.formats import IMAGE_TOKEN, PAD_TOKEN

from .chat_templates import FORMAT_TOKENS, chat_template
from .generation import make_savable
from .spec import AssemblyError, ChatFormat

# model_type -> the decoder HF Llava builds for it; each one is covered by a parity test.
SUPPORTED_TEXT_TYPES = ("llama", "mistral", "qwen2")
NEW_ROW_VARIANCE = 1e-9  # as transformers' mean resizing: new rows sit within ~3e-5 std of the mean
ROW_CHUNK = 4096  # rows per step of the mean/variance pass, so a 7B vocabulary is never copied whole
REBUILT_BUFFERS = ("rotary_emb.inv_freq",)  # older checkpoints saved it; current models recompute it
# tokenizer_config.json keys that preset truncation or padding (transformers writes them from tokenizer.json)
TOKENIZER_PRESETS = ("max_length", "truncation_strategy", "truncation", "padding", "stride", "pad_to_multiple_of")
# Generation settings an older config.json may hold; they belong in generation_config.json, not the decoder's config
CONFIG_GENERATION_KEYS = ("max_length", "min_length", "temperature", "top_p", "top_k", "do_sample", "num_beams")


def check_text_type(model_type: str | None, where: Path) -> str:
    if model_type not in SUPPORTED_TEXT_TYPES:
        raise AssemblyError(f"{where}: model_type {model_type!r} is not a language model this assembler supports "
                            f"(supported: {', '.join(SUPPORTED_TEXT_TYPES)}); give a LLaMA/Vicuna, Mistral or "
                            "Qwen2 checkpoint")
    return model_type


def text_config_from(raw: dict[str, Any], model_type: str):
    """A text config of `model_type` from a raw config dict (foreign keys are dropped by the caller)."""
    from transformers import CONFIG_MAPPING

    dropped = {"model_type", "architectures", "auto_map", *CONFIG_GENERATION_KEYS}
    fields = {key: value for key, value in raw.items() if key not in dropped}
    return CONFIG_MAPPING[model_type].from_dict(fields)


def load_tokenizer(path: Path, role: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise AssemblyError(f"{role} {path}: no usable tokenizer ({error}); copy the tokenizer files "
                            "(tokenizer.json or tokenizer.model + tokenizer_config.json) next to config.json") from error


def strip_presets(tokenizer) -> None:
    """Forget a truncation/padding preset the source tokenizer carries (a tokenizer called with `truncation=True,
    max_length=N` saves it), so plain transformers does not cut every prompt of the checkpoint to N tokens."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    for key in TOKENIZER_PRESETS:
        tokenizer.init_kwargs.pop(key, None)


def adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def prepare_tokenizer(tokenizer, chat_format: ChatFormat = "llava_v1") -> list[str]:
    """Add `<image>` and a pad token (`<pad>`, never `<unk>`), make a tokenizer with a BOS add it, pad on the
    left (batched generation) and set the chat template of `chat_format`, which leaves BOS to the tokenizer.
    Tokens the format writes (ChatML's, Llama-3's headers) are added after those when missing; returns them."""
    from tokenizers import AddedToken

    strip_presets(tokenizer)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.unk_token_id:
        if PAD_TOKEN in tokenizer.get_vocab():
            tokenizer.pad_token = PAD_TOKEN
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if tokenizer.bos_token is not None and not adds_bos(tokenizer):
        tokenizer.add_bos_token = True  # training put one BOS first; `processor(text=...)` must too
        if not adds_bos(tokenizer):
            raise AssemblyError(f"tokenizer {type(tokenizer).__name__} has BOS {tokenizer.bos_token!r} but cannot be "
                                "made to add it; save the language model with a fast tokenizer (tokenizer.json)")
    missing = [token for token in FORMAT_TOKENS[chat_format] if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in missing],
                             special_tokens=True)
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"
    tokenizer.chat_template = chat_template(chat_format)
    return missing


def padded_rows(tokenizer_size: int, stored_rows: int, multiple: int) -> int:
    """Embedding rows after assembly: enough for every token, rounded up; never fewer than stored."""
    rows = max(tokenizer_size, stored_rows)
    return -(-rows // multiple) * multiple


def grow_rows(old: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """`old` with rows appended, each the mean of the old rows plus noise of 1e-9 times their variance."""
    if rows == old.shape[0]:
        return old
    total = torch.zeros(old.shape[1], dtype=torch.float64)
    for start in range(0, old.shape[0], ROW_CHUNK):
        total += old[start:start + ROW_CHUNK].sum(0, dtype=torch.float64)
    mean = total / old.shape[0]
    squares = torch.zeros_like(mean)
    for start in range(0, old.shape[0], ROW_CHUNK):
        squares += ((old[start:start + ROW_CHUNK].double() - mean) ** 2).sum(0)
    std = (squares / old.shape[0] * NEW_ROW_VARIANCE).sqrt()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(rows - old.shape[0], old.shape[1], generator=generator, dtype=torch.float64)
    return torch.cat([old, (mean + noise * std).to(old.dtype)])


@dataclass
class TextPart:
    config: Any  # the decoder's PreTrainedConfig; vocab_size is updated to the padded row count
    tokenizer: Any
    generation_config: Any
    stored_rows: int  # embedding rows in the stored weights
    notes: list[str]  # what was changed on the way, one line each, for the report

    @property
    def tied(self) -> bool:
        return bool(getattr(self.config, "tie_word_embeddings", False))


def finish_text(config, tokenizer, generation_config, multiple: int, where: str,
                chat_format: ChatFormat = "llava_v1") -> TextPart:
    """Prepare the tokenizer and size the vocabulary; the config then describes the output's decoder."""
    stored_rows = config.vocab_size
    added = prepare_tokenizer(tokenizer, chat_format)
    config.vocab_size = padded_rows(len(tokenizer), stored_rows, multiple)
    config.pad_token_id = tokenizer.pad_token_id
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name)
        if value is not None:
            setattr(generation_config, name, value)
    notes = make_savable(generation_config, f"{where}/generation_config.json")
    if added:
        notes.append(f"{where}: the tokenizer lacked {', '.join(added)}, which the {chat_format} format writes; "
                     "added as special tokens with new embedding rows (the model has yet to learn them)")
    return TextPart(config, tokenizer, generation_config, stored_rows, notes)


def llm_key(stored: str) -> str | None:
    """The runtime key inside HF Llava for a stored causal-LM key; None for buffers to leave out."""
    if stored.endswith(REBUILT_BUFFERS):
        return None
    if stored.startswith("model."):
        return "model.language_model." + stored.removeprefix("model.")
    return stored  # lm_head.weight keeps its name
