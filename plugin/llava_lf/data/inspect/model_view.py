"""`llava-lf inspect --model`: how many tokens each image becomes under one model's processing, from a checkpoint's
processor files (no weights) or an assembly preset's choices. The arithmetic is the plugin's own
(`common.image_tokens`): LLaVA-1.5's fixed count, LLaVA-NeXT's AnyRes count from the image's size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_lf.common.anyres import grid_pinpoints, grid_problems
from llava_lf.common.image_tokens import (
    HOST_MAX_PIXELS,
    HOST_MIN_PIXELS,
    NextGeometry,
    image_seqlen_from_config,
    next_geometry,
)
from llava_lf.errors import LlavaLfError
from llava_lf.resources import presets_dir

# Every preset names CLIP ViT-L/14-336 as its vision tower (its prerequisites): 336-px tiles, 14-px patches.
PRESET_TILE, PRESET_PATCH = 336, 14
# A preset's chat format (`llava/conversation.py`'s names) -> our template that trains it.
PRESET_TEMPLATES = {"llava_v1": "llava_v1", "mistral_instruct": "llava_mistral_instruct",
                    "chatml_direct": "llava_chatml_direct", "llama_3": "llava_llama_3"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelView:
    name: str  # as given to --model
    family: str  # "LLaVA-1.5" (one count per image) or "LLaVA-NeXT" (AnyRes: a count per size)
    fixed: int | None  # tokens per image, LLaVA-1.5
    geometry: NextGeometry | None  # LLaVA-NeXT
    tokenizer: Path | None  # the checkpoint's tokenizer; None for a preset
    template: str | None  # the preset's chat format as our template; None: --template decides
    note: str  # where the numbers come from, for the card

    @property
    def needs_sizes(self) -> bool:
        return self.geometry is not None

    def image_tokens(self, width: int, height: int) -> int:
        """Tokens of an image whose file is `width` x `height` (after the host's resize, for NeXT)."""
        return self.fixed if self.geometry is None else self.geometry.tokens(width, height)

    def settings(self) -> dict:
        geometry = self.geometry
        return {"name": self.name, "family": self.family, "tokens_per_image": self.fixed,
                "anyres": None if geometry is None else {
                    "pinpoints": [list(pair) for pair in geometry.pinpoints], "tile": list(geometry.tile),
                    "patch": geometry.patch, "base_extra": geometry.base_extra, "max_pixels": geometry.max_pixels,
                    "min_pixels": geometry.min_pixels},
                "tokenizer": str(self.tokenizer) if self.tokenizer else None, "template": self.template,
                "note": self.note}


def load_model_view(value: str | Path) -> ModelView:
    """A checkpoint folder (its processor files) or a preset name / preset YAML file."""
    path = Path(value)
    if path.is_dir():
        return _checkpoint_view(path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _preset_view(str(value), path)
    named = presets_dir() / f"{value}.yaml"
    if named.is_file():
        return _preset_view(str(value), named)
    known = ", ".join(sorted(file.stem for file in presets_dir().glob("*.yaml")))
    raise LlavaLfError(f"--model {value}: neither a checkpoint folder nor a preset; pass a llava-hf LLaVA-1.5 or "
                       f"LLaVA-NeXT folder (its processor files are read, not its weights) or one of: {known}")


def _checkpoint_view(path: Path) -> ModelView:
    if not any((path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise LlavaLfError(f"--model {path}: no processor files; pass a llava-hf LLaVA-1.5 or LLaVA-NeXT "
                           "checkpoint folder (with its processor files), or a preset name")
    from transformers import AutoProcessor  # reads the processor and tokenizer files only

    try:
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        raise LlavaLfError(f"--model {path}: cannot read its processor ({error}); pass a llava-hf checkpoint folder"
                           ) from None
    tokenizer = path if any((path / name).is_file() for name in _TOKENIZER_FILES) else None
    geometry = next_geometry(processor)
    if geometry is not None:
        return ModelView(str(path), "LLaVA-NeXT", None, geometry, tokenizer, None,
                         f"AnyRes counts from the processor files in {path}")
    fixed = image_seqlen_from_config(processor)
    if fixed is None:
        raise LlavaLfError(f"--model {path}: its processor ({type(processor).__name__}) fixes no image size and has "
                           "no AnyRes pinpoints; pass a llava-hf LLaVA-1.5 or LLaVA-NeXT checkpoint")
    return ModelView(str(path), "LLaVA-1.5", fixed, None, tokenizer, None,
                     f"{fixed} tokens per image from the processor files in {path}")


def _preset_view(name: str, path: Path) -> ModelView:
    import yaml

    try:
        choices = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise LlavaLfError(f"--model {path}: not valid YAML ({error})") from None
    if not isinstance(choices, dict):
        raise LlavaLfError(f"--model {path}: an assembly preset is a mapping of choices")
    grids = choices.get("anyres_grids") or []
    problems = grid_problems(grids, f"--model {path}: anyres_grids") if isinstance(grids, list) else \
        [f"--model {path}: anyres_grids must be a list such as [1x2, 2x1, 2x2]"]
    chat_format = choices.get("chat_format", "llava_v1")
    if chat_format not in PRESET_TEMPLATES:
        problems.append(f"--model {path}: chat_format {chat_format!r} is not one of {', '.join(PRESET_TEMPLATES)}")
    if problems:
        raise LlavaLfError(problems)
    # The CLS token: dropped by "default" (LLaVA's patch features), kept by "full".
    extra = 0 if choices.get("select_strategy", "default") == "default" else 1
    side = PRESET_TILE // PRESET_PATCH
    tower = f"preset {name}: CLIP ViT-L/14-336 as its prerequisites name ({PRESET_TILE}-px tiles, {PRESET_PATCH}-px patches)"
    template = PRESET_TEMPLATES[chat_format]
    if not grids:
        return ModelView(name, "LLaVA-1.5", side * side + extra, None, None, template, tower)
    pinpoints = tuple((h, w) for h, w in grid_pinpoints(grids, PRESET_TILE))
    geometry = NextGeometry(pinpoints=pinpoints, tile=(PRESET_TILE, PRESET_TILE), patch=PRESET_PATCH,
                            base_extra=extra, max_pixels=HOST_MAX_PIXELS, min_pixels=HOST_MIN_PIXELS)
    return ModelView(name, "LLaVA-NeXT", None, geometry, None, template, f"{tower}, grids {', '.join(grids)}")
