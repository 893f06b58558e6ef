"""Model assembly: CLIP/SigLIP + projector + causal LM into a llava-hf checkpoint (LLaVA or LLaVA-NeXT), a
LLaVA-1.5-layout stage 1 upgraded to LLaVA-NeXT, and import of original LLaVA checkpoints. Importing this package is cheap; torch and transformers load when a function runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import AssemblyError, AssemblySpec, ImportSpec, UpgradeSpec

if TYPE_CHECKING:
    from .build import AssemblyReport

__all__ = ["AssemblyError", "AssemblySpec", "ImportSpec", "UpgradeSpec", "assemble", "assemble_report", "import_llava",
           "import_llava_report", "upgrade_to_next", "upgrade_to_next_report"]


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


def upgrade_to_next_report(spec: UpgradeSpec) -> AssemblyReport:
    """Turn a LLaVA-1.5-layout llava-hf checkpoint into a LLaVA-NeXT one and say what went into it."""
    from .upgrade import upgrade_stage1

    return upgrade_stage1(spec)


def upgrade_to_next(spec: UpgradeSpec) -> Path:
    """Turn a LLaVA-1.5-layout llava-hf checkpoint into a LLaVA-NeXT one; return the output directory."""
    return upgrade_to_next_report(spec).out
