"""Model assembly: CLIP/SigLIP + projector + causal LM into a llava-hf checkpoint, and import of original
LLaVA checkpoints. Importing this package is cheap; torch and transformers load when a function runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import AssemblyError, AssemblySpec, ImportSpec

if TYPE_CHECKING:
    from .build import AssemblyReport

__all__ = ["AssemblyError", "AssemblySpec", "ImportSpec", "assemble", "assemble_report", "import_llava",
           "import_llava_report"]


def assemble_report(spec: AssemblySpec) -> AssemblyReport:
    """Write the llava-hf checkpoint described by `spec` and say what went into it."""
    from .parts import assemble_parts

    return assemble_parts(spec)


def assemble(spec: AssemblySpec) -> Path:
    """Write the llava-hf checkpoint described by `spec`; return its directory."""
    return assemble_report(spec).out


def import_llava_report(spec: ImportSpec) -> AssemblyReport:
    """Convert an original LLaVA checkpoint to llava-hf and say what went into it."""
    from .original import import_original

    return import_original(spec)


def import_llava(spec: ImportSpec) -> Path:
    """Convert an original LLaVA checkpoint to llava-hf; return the output directory."""
    return import_llava_report(spec).out
