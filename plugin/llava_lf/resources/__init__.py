"""The shipped recipes as package data: the recipe YAMLs, the demo's recipes, assembly presets, DeepSpeed configs.

They live here so that an installed wheel carries them; the repository's `yaml/` is a link to this folder,
so the files users edit in a checkout and the files the package reads are the same files.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from llava_lf.errors import LlavaLfError


def recipes_dir() -> Path:
    """The folder of shipped recipes (a real directory: the host's CLI reads these files by path)."""
    folder = resources.files(__name__) / "recipes"
    path = Path(str(folder))
    if not path.is_dir():  # a zipped install would need extraction; we ship as a plain wheel
        raise LlavaLfError([f"the packaged recipes are not a folder on disk ({folder}); reinstall llamafactory-llava "
                            "from a wheel or a source checkout"])
    return path


def presets_dir() -> Path:
    return recipes_dir() / "assemble"


def demo_recipes_dir() -> Path:
    return recipes_dir() / "demo"


def copy_recipes(destination: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy every shipped recipe file into `destination` (keeping sub-folders); return the files written.

    Refuses to overwrite an existing file unless `overwrite`, naming every clash at once.
    """
    source = recipes_dir()
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in {".yaml", ".json"})
    clashes = [destination / p.relative_to(source) for p in files if (destination / p.relative_to(source)).exists()]
    if clashes and not overwrite:
        raise LlavaLfError([f"{path} exists; pass --overwrite to replace it or choose another folder"
                            for path in clashes])
    if destination.exists() and not destination.is_dir():
        raise LlavaLfError([f"{destination} is a file, not a folder; choose a folder for the recipes"])
    written = []
    for path in files:
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
    return written
