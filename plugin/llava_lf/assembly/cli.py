"""`llava-lf assemble` and `llava-lf import-llava`: flags and presets around the library calls."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

from llava_lf.errors import EXIT_OK

from .spec import (
    CHAT_FORMATS,
    DTYPE_NAMES,
    PROJECTOR_KINDS,
    SELECT_STRATEGIES,
    AssemblyError,
    AssemblySpec,
    ImportSpec,
    UpgradeSpec,
)

SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """'5GB', '500MiB' or a byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if not match or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size like 5GB, 500MiB or a byte count")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new directory for the llava-hf checkpoint")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                        help="weights dtype (default auto: the language model's stored dtype)")
    parser.add_argument("--max-shard-size", type=parse_size, default=None, help="largest weights file (default 5GiB)")
    parser.add_argument("--seed", type=int, default=None, help="for new embedding rows and a fresh projector")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_subcommand(commands) -> None:
    assemble = commands.add_parser("assemble", help="CLIP + projector + LLaMA -> a llava-hf checkpoint (LLaVA or NeXT)")
    assemble.add_argument("--vision", type=Path, default=None, help="CLIP or SigLIP checkpoint directory")
    assemble.add_argument("--llm", type=Path, default=None, help="LLaMA/Vicuna, Mistral or Qwen2 directory")
    assemble.add_argument("--llava", type=Path, default=None,
                          help="instead of --vision/--llm: a LLaVA-1.5-layout llava-hf checkpoint (stage 1) to turn "
                               "into LLaVA-NeXT with a NeXT preset, every tensor carried")
    _add_output_flags(assemble)
    assemble.add_argument("--preset", default=None,
                          help="yaml/assemble/NAME.yaml or its NAME (e.g. llava1_5_7b); flags override it")
    assemble.add_argument("--projector", choices=PROJECTOR_KINDS, default=None,
                          help="default: what --projector-weights holds, else mlp2x_gelu")
    assemble.add_argument("--projector-weights", type=Path, default=None,
                          help="LLaVA stage-1 mm_projector.bin / .safetensors")
    assemble.add_argument("--vision-feature-layer", type=int, default=None, help="default -2 (penultimate)")
    assemble.add_argument("--select-strategy", choices=SELECT_STRATEGIES, default=None,
                          help="default: drop CLIP's CLS token; full: keep it")
    assemble.add_argument("--pad-to-square", action=argparse.BooleanOptionalAction, default=None,
                          help="pad images to a square with the mean colour before resizing (LLaVA-1.5)")
    assemble.add_argument("--vocab-multiple", type=int, default=None, help="default 64")
    assemble.add_argument("--anyres-grids", type=_grids, default=None,
                          help="LLaVA-NeXT tile grids, rows x columns, e.g. 1x2,2x1,2x2,3x1,1x3 (the NeXT presets')")
    assemble.add_argument("--chat-format", choices=CHAT_FORMATS, default=None,
                          help="the processor's chat template (default llava_v1)")
    assemble.set_defaults(run=run_assemble)

    original = commands.add_parser("import-llava", help="original LLaVA checkpoint (liuhaotian format) -> llava-hf")
    original.add_argument("src", type=Path, help="the original checkpoint directory (config.json with mm_* keys)")
    original.add_argument("--vision", type=Path, required=True,
                          help="the vision tower it was trained with (config + image processor)")
    _add_output_flags(original)
    original.set_defaults(run=run_import)


def _grids(text: str) -> tuple[str, ...]:
    from llava_lf.common.anyres import parse_grid

    grids = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        for grid in grids:
            parse_grid(grid)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return grids


def _given(args: argparse.Namespace, names: list[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def assembly_spec(args: argparse.Namespace) -> AssemblySpec | UpgradeSpec:
    """Defaults < preset < flags; with --llava, the upgrade of a stage-1 checkpoint (which keeps its own weights'
    choices: only the grids, the chat format and the seed apply)."""
    from .presets import load_preset

    settings = load_preset(args.preset) if args.preset else {}
    if args.llava is not None:
        parts = [flag for flag, value in (("--vision", args.vision), ("--llm", args.llm)) if value is not None]
        if parts:
            raise AssemblyError(f"--llava and {' / '.join(parts)}: give either a stage-1 checkpoint (--llava) or the "
                                "parts (--vision and --llm), not both")
        choices = [field.name for field in fields(UpgradeSpec)]
        settings = {key: value for key, value in settings.items() if key in choices}
        settings.update(_given(args, choices))
        if args.max_shard_size is not None:
            settings["max_shard_bytes"] = args.max_shard_size
        settings.setdefault("anyres_grids", ())
        return UpgradeSpec(**settings, progress=not args.quiet)
    if args.vision is None or args.llm is None:
        raise AssemblyError("assemble needs --vision and --llm (the parts), or --llava (a stage-1 checkpoint to "
                            "turn into LLaVA-NeXT)")
    choices = [field.name for field in fields(AssemblySpec)]
    settings.update(_given(args, choices))
    if args.max_shard_size is not None:
        settings["max_shard_bytes"] = args.max_shard_size
    return AssemblySpec(**settings, progress=not args.quiet)


def import_spec(args: argparse.Namespace) -> ImportSpec:
    settings = _given(args, [field.name for field in fields(ImportSpec)])
    if args.max_shard_size is not None:
        settings["max_shard_bytes"] = args.max_shard_size
    return ImportSpec(**settings, progress=not args.quiet)


def run_assemble(args: argparse.Namespace) -> int:
    from . import assemble_report, upgrade_to_next_report

    spec = assembly_spec(args)
    report = upgrade_to_next_report(spec) if isinstance(spec, UpgradeSpec) else assemble_report(spec)
    print(report.summary())
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from . import import_llava_report

    print(import_llava_report(import_spec(args)).summary())
    return EXIT_OK
