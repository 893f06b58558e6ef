"""Assemble a CLIP vision tower, a projector and a causal LM into a standard llava-hf checkpoint.

LLaVA's first stage starts from a plain CLIP and a plain LLaMA/Vicuna; the host can only load a finished
llava-hf checkpoint. The result of `assemble` loads with `LlavaForConditionalGeneration` and
`AutoProcessor`, and carries the `llava_v1` chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .formats import IMAGE_TOKEN, LLAVA_V1_CHAT_TEMPLATE, PAD_TOKEN

SelectStrategy = Literal["default", "full"]


class AssemblyError(ValueError):
    """Bad input to the assembler; the message says what to fix."""


@dataclass(frozen=True)
class AssemblySpec:
    vision: Path
    llm: Path
    out: Path
    projector_act: str = "gelu"  # mlp2x_gelu, as LLaVA-1.5
    vision_feature_layer: int = -2
    select_strategy: SelectStrategy = "default"
    vocab_multiple: int = 64


def _read_config(path: Path, role: str) -> dict:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AssemblyError(f"--{role} {path}: no config.json; give a Hugging Face model directory")
    return json.loads(config_file.read_text())


def _load_vision(path: Path):
    from transformers import AutoImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = _read_config(path, "vision")
    if config.get("model_type") not in {"clip", "clip_vision_model"}:
        raise AssemblyError(f"--vision {path}: model_type {config.get('model_type')!r} is not a CLIP vision model")
    vision_config = CLIPVisionConfig.from_pretrained(path)
    model = CLIPVisionModel.from_pretrained(path, config=vision_config)
    return model, AutoImageProcessor.from_pretrained(path)


def _load_llm(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _read_config(path, "llm")
    if "vision_config" in config:
        raise AssemblyError(f"--llm {path}: this is a multimodal checkpoint; give the language model alone")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def prepare_tokenizer(tokenizer) -> None:
    """Add `<image>` and a pad token when missing (reused when present)."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.chat_template = LLAVA_V1_CHAT_TEMPLATE


def assemble(spec: AssemblySpec) -> Path:
    """Build and save the llava-hf checkpoint described by `spec`; return its directory."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from .image_tokens import image_seqlen_from_config

    vision, image_processor = _load_vision(spec.vision)
    llm, tokenizer = _load_llm(spec.llm)
    prepare_tokenizer(tokenizer)
    if len(tokenizer) > llm.config.vocab_size or llm.config.vocab_size % spec.vocab_multiple:
        # New rows start near the mean of the old ones (transformers' mean resizing).
        llm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=spec.vocab_multiple)

    patch = vision.config.patch_size
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy=spec.select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=LLAVA_V1_CHAT_TEMPLATE,
    )
    # The same count the training plugin uses; a processor without a fixed size gets CLIP's native one.
    image_seq_length = image_seqlen_from_config(processor) or (vision.config.image_size // patch) ** 2 + (
        1 if spec.select_strategy == "full" else 0)
    config = LlavaConfig(
        vision_config=vision.config,
        text_config=llm.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act=spec.projector_act,
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.select_strategy,
        image_seq_length=image_seq_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision.state_dict())
    model.model.language_model.load_state_dict(llm.model.state_dict())
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id

    spec.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(spec.out)
    processor.save_pretrained(spec.out)
    return spec.out
