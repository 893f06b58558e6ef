"""`llava-lf assemble` and `llava-lf import-llava`: flags and presets around the library calls."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

from llava_lf.errors import EXIT_OK

from .spec import DTYPE_NAMES, PROJECTOR_KINDS, SELECT_STRATEGIES, AssemblySpec, ImportSpec

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
    assemble = commands.add_parser("assemble", help="CLIP + projector + LLaMA -> a llava-hf checkpoint")
    assemble.add_argument("--vision", type=Path, required=True, help="CLIP or SigLIP checkpoint directory")
    assemble.add_argument("--llm", type=Path, required=True, help="LLaMA/Vicuna, Mistral or Qwen2 directory")
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
    assemble.set_defaults(run=run_assemble)

    original = commands.add_parser("import-llava", help="original LLaVA checkpoint (liuhaotian format) -> llava-hf")
    original.add_argument("src", type=Path, help="the original checkpoint directory (config.json with mm_* keys)")
    original.add_argument("--vision", type=Path, required=True,
                          help="the vision tower it was trained with (config + image processor)")
    _add_output_flags(original)
    original.set_defaults(run=run_import)


def _given(args: argparse.Namespace, names: list[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def assembly_spec(args: argparse.Namespace) -> AssemblySpec:
    """Defaults < preset < flags."""
    from .presets import load_preset

    choices = [field.name for field in fields(AssemblySpec)]
    settings = load_preset(args.preset) if args.preset else {}
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
    from . import assemble_report

    print(assemble_report(assembly_spec(args)).summary())
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from . import import_llava_report

    print(import_llava_report(import_spec(args)).summary())
    return EXIT_OK
