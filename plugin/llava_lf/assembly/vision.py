"""The vision side: a CLIP or SigLIP tower (full dual-encoder checkpoints give their vision half) and its
image processor, optionally padding to a square with the processor's mean colour as LLaVA-1.5 does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_lf.common.image_tokens import processed_image_size

from .spec import AssemblyError

# Stored model_type -> the vision-only model_type HF Llava hosts, and how many non-patch tokens it emits.
VISION_TYPES: dict[str, str] = {
    "clip": "clip_vision_model", "clip_vision_model": "clip_vision_model",
    "siglip": "siglip_vision_model", "siglip_vision_model": "siglip_vision_model",
}
CLS_TOKENS: dict[str, int] = {"clip_vision_model": 1, "siglip_vision_model": 0}
# Keys of a full CLIP/SigLIP checkpoint that belong to its text half or its contrastive heads.
NOT_VISION_PREFIXES = ("text_model.", "text_projection", "visual_projection", "logit_scale", "logit_bias")
# Buffers older checkpoints saved that current models rebuild themselves.
REBUILT_BUFFERS = ("embeddings.position_ids",)
PROCESSOR_KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                  "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def read_config(path: Path, role: str) -> dict[str, Any]:
    if not path.exists():
        raise AssemblyError(f"{role} {path}: no such directory; check the path")
    if not path.is_dir():
        raise AssemblyError(f"{role} {path}: is a file; give the model's directory (with config.json)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AssemblyError(f"{role} {path}: no config.json; give a Hugging Face model directory")
    try:
        return json.loads(config_file.read_text())
    except ValueError as error:
        raise AssemblyError(f"{config_file}: not valid JSON ({error})") from error


@dataclass
class VisionPart:
    path: Path
    config: Any  # CLIPVisionConfig | SiglipVisionConfig
    image_processor: Any
    cls_tokens: int


def _config_class(model_type: str):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    return CLIPVisionConfig if model_type == "clip_vision_model" else SiglipVisionConfig


def _image_processor(path: Path, config: Any, pad_to_square: bool):
    from transformers import AutoImageProcessor, LlavaImageProcessor

    if not (path / "preprocessor_config.json").is_file():
        raise AssemblyError(f"--vision {path}: no preprocessor_config.json; copy it from the vision model's "
                            "release (it fixes image size, crop and normalisation)")
    processor = AutoImageProcessor.from_pretrained(path)
    size = processed_image_size(processor)
    if size is not None and size != (config.image_size, config.image_size):
        raise AssemblyError(f"{path / 'preprocessor_config.json'}: makes {size[0]}x{size[1]} images but the tower "
                            f"in config.json takes {config.image_size}x{config.image_size}; use the processor "
                            "released with this tower")
    if not pad_to_square:
        return processor
    # LlavaImageProcessor pads to a square with the mean colour before resizing: LLaVA-1.5's expand2square.
    settings = {key: value for key, value in processor.to_dict().items() if key in PROCESSOR_KEYS}
    settings.setdefault("do_center_crop", False)
    return LlavaImageProcessor(**settings, do_pad=True)


def load_vision(path: Path, pad_to_square: bool, role: str = "--vision") -> VisionPart:
    raw = read_config(path, role)
    stored_type = raw.get("model_type")
    if stored_type not in VISION_TYPES:
        raise AssemblyError(f"{role} {path / 'config.json'}: model_type {stored_type!r} is not a CLIP or SigLIP "
                            f"vision model (accepted: {', '.join(sorted(VISION_TYPES))}); give e.g. "
                            "openai/clip-vit-large-patch14-336")
    model_type = VISION_TYPES[stored_type]
    config = _config_class(model_type).from_pretrained(path)
    return VisionPart(path, config, _image_processor(path, config, pad_to_square), CLS_TOKENS[model_type])


def check_choices(part: VisionPart, feature_layer: int, strategy: str) -> list[str]:
    """Problems with the feature choices for this tower, each with its fix."""
    problems = []
    layers = part.config.num_hidden_layers
    if not -(layers + 1) <= feature_layer <= layers:
        problems.append(f"--vision-feature-layer {feature_layer}: the tower in {part.path} has {layers} layers, "
                        f"so hidden states run from {-(layers + 1)} to {layers}; LLaVA uses -2")
    if strategy == "default" and part.cls_tokens == 0:
        problems.append(f"--select-strategy default drops a CLS token, but the {part.config.model_type} tower in "
                        f"{part.path} has none; use --select-strategy full")
    return problems


def tower_key(stored: str) -> str | None:
    """The key inside HF Llava's vision tower for a stored vision key; None for keys to leave out."""
    if stored.startswith(NOT_VISION_PREFIXES):
        return None
    key = stored.removeprefix("vision_model.")
    return None if key.endswith(REBUILT_BUFFERS) else key


def original_tower_key(stored: str) -> str | None:
    """The same for a tower saved inside an original LLaVA checkpoint (`model.vision_tower...vision_model.X`)."""
    if not stored.startswith("model.vision_tower."):
        return None
    _, found, rest = stored.partition("vision_model.")
    return tower_key(rest) if found else None
