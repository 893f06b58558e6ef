"""What `llava-lf inspect` is asked to do: the datasets and the options, checked before any file is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .near_duplicates import DEFAULT_MAX_DISTANCE

# LLaVA-1.5's two, then LLaVA-NeXT's formats for its other backbones (templates.next_formats)
TEMPLATES = ("llava_v1", "llava_plain", "llava_mistral_instruct", "llava_chatml_direct", "llava_llama_3")


@dataclass(frozen=True)
class InspectOptions:
    image_folder: Path | None = None  # where a LLaVA file's image paths start; None: images are not looked at
    template: str | None = None  # the training template (None: a preset's, else llava_v1); llava_plain: stage-1 checks
    tokenizer: Path | None = None  # a tokenizer or model folder: tokens per record
    cutoff_len: int | None = None  # with a tokenizer: what this cutoff would cut
    image_tokens: int | None = None  # tokens per image, when the tokenizer folder has no Llava processor config
    image_headers: bool = True  # read image headers (sizes); off: only existence
    near_duplicates: bool = False
    max_distance: int = DEFAULT_MAX_DISTANCE
    workers: int | None = None  # near-duplicate hashing processes
    model: str | None = None  # a checkpoint folder or preset name: image tokens as that model counts them

    def __post_init__(self) -> None:
        problems = []
        if self.template is not None and self.template not in TEMPLATES:
            problems.append(f"--template {self.template!r} is not one of {', '.join(TEMPLATES)}")
        if self.cutoff_len is not None and self.tokenizer is None and self.model is None:
            problems.append("--cutoff-len needs --tokenizer or --model: the cutoff is counted in the model's tokens")
        if self.cutoff_len is not None and self.cutoff_len < 1:
            problems.append(f"--cutoff-len must be positive, got {self.cutoff_len}")
        if self.image_folder is not None and not self.image_folder.is_dir():
            problems.append(not_a_folder(self.image_folder))
        if self.near_duplicates and not self.image_headers:
            problems.append("--near-duplicates reads the images: leave out --no-image-headers")
        if not 0 <= self.max_distance < 32:
            problems.append(f"--max-distance must be between 0 and 31 bits, got {self.max_distance}")
        if problems:
            raise LlavaLfError(problems)


def not_a_folder(path: Path) -> str:
    return f"--image-folder {path} is not a folder; pass the folder the records' 'image' paths start from"


@dataclass(frozen=True)
class DatasetInput:
    label: str
    path: Path
    image_folder: Path | None = None  # this dataset's own image folder (else InspectOptions.image_folder)

    @classmethod
    def parse(cls, text: str) -> DatasetInput:
        """`PATH` (labelled by its file name) or `LABEL=PATH`."""
        label, sep, path = text.partition("=")
        if sep and label and "/" not in label:
            return cls(label, Path(path))
        return cls(Path(text).stem, Path(text))
