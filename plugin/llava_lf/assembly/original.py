"""`llava-lf import-llava`: an original LLaVA checkpoint (liuhaotian format, `LlavaLlamaForCausalLM`) to llava-hf.

The original keeps the decoder under `model.*` / `lm_head`, the projector under `model.mm_projector.*`,
and sometimes the tower under `model.vision_tower.*`; its config.json is the decoder's plus `mm_*` keys
that spell the LLaVA choices. The vision tower's config and image processor come from `--vision`.
LLaVA-NeXT (1.6: `image_aspect_ratio: anyres`, `mm_patch_merge_type: spatial_unpad`) adds `model.image_newline`
and its `image_grid_pinpoints`, and becomes a LlavaNext checkpoint, named as transformers' own conversion
script (`convert_llava_next_weights_to_hf.py`) names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .build import AssemblyReport, Recipe, StoredWeights, build_checkpoint, check_destination
from .chat_templates import infer_chat_format
from .generation import load_generation_config
from .language import check_text_type, finish_text, llm_key, load_tokenizer, text_config_from
from .next import NEWLINE_KEY, grids_of
from .projector import PROJECTOR_KEY_PART, read_original
from .spec import DTYPE_NAMES, AssemblyError, ImportSpec, ProjectorKind, SelectStrategy
from .tensor_files import weight_source
from .vision import load_vision, original_tower_key, read_config, tower_key

ORIGINAL_TEXT_TYPES = {"llava": "llama", "llava_llama": "llama", "llava_mistral": "mistral", "llava_qwen": "qwen2"}
SELECT_FEATURES: dict[str, SelectStrategy] = {"patch": "default", "cls_patch": "full"}
# Keys of the original config that describe LLaVA training rather than the decoder.
LLAVA_TRAINING_KEYS = {
    "image_aspect_ratio", "image_grid_pinpoints", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter",
    "tune_mm_vision_resampler", "unfreeze_mm_vision_tower", "use_mm_proj", "tokenizer_model_max_length",
    "tokenizer_padding_side", "_name_or_path",
}


def _text_type(raw: dict[str, Any], where: Path) -> str:
    model_type = raw.get("model_type")
    if model_type in ORIGINAL_TEXT_TYPES:
        return ORIGINAL_TEXT_TYPES[model_type]
    return check_text_type(model_type, where)


def _choices(raw: dict[str, Any], where: Path) -> tuple[ProjectorKind, int, SelectStrategy, bool, list | None]:
    """LLaVA's mm_* settings as llava-hf choices (the last: NeXT's pinpoints, None for LLaVA); anything llava-hf
    cannot express is an error."""
    problems = []
    if raw.get("mm_use_im_start_end"):
        problems.append("mm_use_im_start_end is true: the model wraps images in <im_start>/<im_end>, which "
                        "llava-hf's processor cannot reproduce; only checkpoints trained without it import")
    merge = raw.get("mm_patch_merge_type", "flat")
    aspect = raw.get("image_aspect_ratio") or "square"
    is_next = aspect == "anyres" and merge == "spatial_unpad"
    pinpoints = raw.get("image_grid_pinpoints")
    if not is_next and (merge != "flat" or aspect not in {"pad", "square"}):
        problems.append(f"image_aspect_ratio {aspect!r} / mm_patch_merge_type {merge!r}: this importer converts "
                        "LLaVA v1 and v1.5 (pad or square, flat) and LLaVA-NeXT (anyres, spatial_unpad); other "
                        "tilings have no llava-hf LlavaNext form")
    if is_next and not (isinstance(pinpoints, list) and pinpoints):
        problems.append(f"image_grid_pinpoints {pinpoints!r}: LLaVA-NeXT's anyres needs the list of [width, height] "
                        "canvases (the 1.6 releases: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]])")
    projector = raw.get("mm_projector_type") or "linear"  # v1 checkpoints predate the key
    if projector not in {"linear", "mlp2x_gelu"}:
        problems.append(f"mm_projector_type {projector!r}: only linear and mlp2x_gelu have a llava-hf form")
    feature = raw.get("mm_vision_select_feature", "patch")
    if feature not in SELECT_FEATURES:
        problems.append(f"mm_vision_select_feature {feature!r}: expected one of {', '.join(SELECT_FEATURES)}")
    if problems:
        raise AssemblyError(f"{where}: cannot import:\n  " + "\n  ".join(problems))
    layer = raw.get("mm_vision_select_layer", -1)  # LLaVA's own default when the key is absent
    if is_next and feature != "patch":
        raise AssemblyError(f"{where}: cannot import: mm_vision_select_feature {feature!r} keeps the CLS token, which "
                            "AnyRes cannot lay out (the original asserts on it too)")
    return projector, int(layer), SELECT_FEATURES[feature], aspect == "pad", pinpoints if is_next else None


def read_original_config(src: Path) -> dict[str, Any]:
    raw = read_config(src, "SRC")
    where = src / "config.json"
    if "vision_config" in raw and "text_config" in raw:
        raise AssemblyError(f"{where}: SRC is already a llava-hf checkpoint; use it directly")
    if (src / "adapter_config.json").is_file():
        raise AssemblyError(f"SRC {src}: is a LoRA adapter; merge it into its base first "
                            "(LLaVA's scripts/merge_lora_weights.py), then import the merged model")
    if "mm_hidden_size" not in raw and "mm_vision_tower" not in raw:
        raise AssemblyError(f"{where}: has no mm_* keys, so it is not an original LLaVA checkpoint; for a plain "
                            "language model use `llava-lf assemble --llm`")
    return raw


def _weights_or_hint(src: Path):
    try:
        return weight_source(src, f"SRC {src}")
    except AssemblyError:
        if (src / "mm_projector.bin").is_file():
            raise AssemblyError(f"SRC {src}: holds only a stage-1 projector (mm_projector.bin); use `llava-lf "
                                f"assemble --llm BASE_LLM --projector-weights {src / 'mm_projector.bin'}`") from None
        raise


def import_original(spec: ImportSpec) -> AssemblyReport:
    if spec.dtype not in DTYPE_NAMES or spec.vocab_multiple < 1:
        raise AssemblyError(f"dtype {spec.dtype!r} / vocab_multiple {spec.vocab_multiple}: dtype is one of "
                            f"{', '.join(DTYPE_NAMES)}, vocab_multiple at least 1 (llava-hf uses 64)")
    raw = read_original_config(spec.src)
    where = spec.src / "config.json"
    check_destination(spec.out, [spec.src, spec.vision])
    projector_kind, layer, strategy, pad_to_square, pinpoints = _choices(raw, where)
    source = _weights_or_hint(spec.src)
    text_type = _text_type(raw, where)

    vision = load_vision(spec.vision, pad_to_square)
    if raw.get("mm_hidden_size") not in (None, vision.config.hidden_size):
        raise AssemblyError(f"{where}: mm_hidden_size {raw['mm_hidden_size']} but the tower in --vision {spec.vision} "
                            f"is {vision.config.hidden_size} wide; give the tower it was trained with "
                            f"({raw.get('mm_vision_tower', 'see mm_vision_tower')})")
    decoder = {key: value for key, value in raw.items()
               if not key.startswith("mm_") and key not in LLAVA_TRAINING_KEYS}
    text_config = text_config_from(decoder, text_type)
    generation_config = load_generation_config(spec.src, text_config, "SRC")
    generation_config.max_length = None  # liuhaotian's training length; llava-hf's checkpoints carry none
    tokenizer = load_tokenizer(spec.src, "SRC")
    grids = grids_of(pinpoints, vision.config.image_size, str(where)) if pinpoints else ()
    chat_format = infer_chat_format(tokenizer.get_vocab(), raw.get("model_type")) if grids else "llava_v1"
    if grids and NEWLINE_KEY not in source:
        raise AssemblyError(f"SRC {spec.src}: LLaVA-NeXT config but no {NEWLINE_KEY} tensor; the weights are not "
                            "this config's (or were saved before stage 2)")
    text = finish_text(text_config, tokenizer, generation_config, spec.vocab_multiple, f"SRC {spec.src}", chat_format)

    projector = read_original(source, projector_kind)
    has_tower = any(key.startswith("model.vision_tower.") for key in source)

    def decoder_key(key: str) -> str | None:
        if key == NEWLINE_KEY:
            return NEWLINE_KEY
        return None if PROJECTOR_KEY_PART in key or key.startswith("model.vision_tower.") else llm_key(key)

    stored = StoredWeights(
        vision=source if has_tower else weight_source(spec.vision, f"--vision {spec.vision}"),
        vision_key=original_tower_key if has_tower else tower_key,
        text=source, text_key=decoder_key,
    )
    recipe = Recipe(projector=projector_kind, vision_feature_layer=layer, select_strategy=strategy,
                    pad_to_square=pad_to_square, dtype=spec.dtype, vocab_multiple=spec.vocab_multiple,
                    seed=spec.seed, max_shard_bytes=spec.max_shard_bytes, progress=spec.progress,
                    anyres_grids=grids, chat_format=chat_format)
    return build_checkpoint(vision, text, projector, stored, recipe, spec.out)
