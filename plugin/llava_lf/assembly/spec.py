"""What an assembly or an import is asked to build (import-free: the CLI and presets read these)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from llava_lf.errors import LlavaLfError

ProjectorKind = Literal["mlp2x_gelu", "linear"]
SelectStrategy = Literal["default", "full"]
DtypeName = Literal["auto", "float32", "float16", "bfloat16"]
# The conversation format whose chat template the processor carries (LLaVA-NeXT's conversation.py names).
ChatFormat = Literal["llava_v1", "mistral_instruct", "chatml_direct", "llama_3"]

PROJECTOR_KINDS: tuple[str, ...] = get_args(ProjectorKind)
SELECT_STRATEGIES: tuple[str, ...] = get_args(SelectStrategy)
DTYPE_NAMES: tuple[str, ...] = get_args(DtypeName)
CHAT_FORMATS: tuple[str, ...] = get_args(ChatFormat)

DEFAULT_SHARD_BYTES = 5 * 1024**3


def _paths_as_paths(spec: object, names: tuple[str, ...]) -> None:
    """Accept str paths from programmatic callers (the dataclasses are frozen, hence object.__setattr__)."""
    for name in names:
        value = getattr(spec, name)
        if value is not None and not isinstance(value, Path):
            object.__setattr__(spec, name, Path(value))


class AssemblyError(LlavaLfError):
    """Bad input to the assembler or importer; the message names the file and the fix."""


@dataclass(frozen=True)
class AssemblySpec:
    """CLIP/SigLIP vision + projector + causal LM -> a llava-hf checkpoint at `out`; LLaVA-1.5's choices by default."""

    vision: Path
    llm: Path
    out: Path
    projector: ProjectorKind | None = None  # None: what `projector_weights` holds, else mlp2x_gelu
    projector_weights: Path | None = None  # an original mm_projector.bin / .safetensors (stage 1)
    vision_feature_layer: int = -2  # penultimate layer, as LLaVA
    select_strategy: SelectStrategy = "default"  # drop CLIP's CLS token
    pad_to_square: bool = False  # LLaVA-1.5 pads with the CLIP mean colour; the presets turn it on
    dtype: DtypeName = "auto"  # auto: the language model's stored dtype
    vocab_multiple: int = 64
    seed: int = 0  # new embedding rows, a fresh projector and image_newline
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    progress: bool = True
    anyres_grids: tuple[str, ...] = ()  # LLaVA-NeXT tile grids ("1x2", ...); empty: LLaVA (one tile, no newline)
    chat_format: ChatFormat = "llava_v1"

    def __post_init__(self) -> None:
        _paths_as_paths(self, ("vision", "llm", "out", "projector_weights"))
        object.__setattr__(self, "anyres_grids", tuple(self.anyres_grids))


@dataclass(frozen=True)
class UpgradeSpec:
    """A LLaVA-1.5-layout llava-hf checkpoint (NeXT's stage 1) -> LLaVA-NeXT, every tensor carried bit for bit."""

    llava: Path
    out: Path
    anyres_grids: tuple[str, ...]
    chat_format: ChatFormat = "llava_v1"
    seed: int = 0  # image_newline
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    progress: bool = True

    def __post_init__(self) -> None:
        _paths_as_paths(self, ("llava", "out"))
        object.__setattr__(self, "anyres_grids", tuple(self.anyres_grids))


@dataclass(frozen=True)
class ImportSpec:
    """An original (liuhaotian-format) LLaVA checkpoint -> llava-hf; its config.json supplies the choices."""

    src: Path
    vision: Path
    out: Path
    dtype: DtypeName = "auto"
    vocab_multiple: int = 64
    seed: int = 0
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    progress: bool = True

    def __post_init__(self) -> None:
        _paths_as_paths(self, ("src", "vision", "out"))
