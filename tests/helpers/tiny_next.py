"""The tiny LLaVA-NeXT the NeXT tests run on: the README's `llava-lf assemble --preset llava1_6_vicuna_7b` on the
session's tiny parts (48-px tiles, 16-px patches), in float32, through `llava-lf`'s parser in process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.cli import llava_lf


def assemble_tiny_next(tiny_parts: tuple[Path, Path], out: Path) -> subprocess.CompletedProcess:
    """Assemble it into `out`; the command's result (its output) for tests that check what it printed."""
    clip, llama = tiny_parts
    result = llava_lf("assemble", "--preset", "llava1_6_vicuna_7b", "--vision", clip, "--llm", llama, "--out", out,
                      "--quiet", "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    return result
