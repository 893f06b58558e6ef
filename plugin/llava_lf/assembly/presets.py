"""Named assembly presets (`yaml/assemble/*.yaml`): YAML files that spell a recipe's model choices.

Keys are strict: an unknown key or a bad value is an error that names the file, the key and the valid values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llava_lf.common.anyres import grid_problems
from llava_lf.resources import presets_dir

from .spec import CHAT_FORMATS, DTYPE_NAMES, PROJECTOR_KINDS, SELECT_STRATEGIES, AssemblyError

# key -> (type, allowed values or None)
PRESET_KEYS: dict[str, tuple[type, tuple[str, ...] | None]] = {
    "projector": (str, PROJECTOR_KINDS),
    "vision_feature_layer": (int, None),
    "select_strategy": (str, SELECT_STRATEGIES),
    "pad_to_square": (bool, None),
    "dtype": (str, DTYPE_NAMES),
    "vocab_multiple": (int, None),
    "anyres_grids": (list, None),  # LLaVA-NeXT: tile grids, e.g. [1x2, 2x1, 2x2, 3x1, 1x3]
    "chat_format": (str, CHAT_FORMATS),
}


def find_preset(value: str) -> Path:
    """A preset given as a file path, or by name (`llava1_5_7b`) from the preset folder."""
    path = Path(value)
    if path.is_file():
        return path
    named = presets_dir() / f"{value}.yaml"
    if named.is_file():
        return named
    known = sorted(file.stem for file in presets_dir().glob("*.yaml"))
    raise AssemblyError(f"--preset {value}: no such file or preset; known presets: {', '.join(known) or 'none'}")


def load_preset(name_or_path: str) -> dict[str, Any]:
    import yaml

    path = find_preset(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise AssemblyError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise AssemblyError(f"{path}: expected a mapping of choices ({', '.join(PRESET_KEYS)})")
    problems = []
    for key, value in data.items():
        if key not in PRESET_KEYS:
            problems.append(f"{path}: unknown key {key!r}; valid keys: {', '.join(PRESET_KEYS)}")
            continue
        kind, allowed = PRESET_KEYS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{path}: {key} must be a {kind.__name__}, got {value!r}")
        elif allowed is not None and value not in allowed:
            problems.append(f"{path}: {key} {value!r} is not one of {', '.join(allowed)}")
        elif key == "anyres_grids":
            problems += grid_problems(value, f"{path}: anyres_grids")
    if problems:
        raise AssemblyError("\n".join(problems))
    if "anyres_grids" in data:
        data["anyres_grids"] = tuple(str(grid) for grid in data["anyres_grids"])
    return data
