"""`llava-lf convert` and `llava-lf check`: the converter's command line.

SRC is a LLaVA JSON/JSONL file with --image-folder, or parquet shards in LLaVA-NeXT-Data's layout (files, a
folder, a glob pattern such as 'data/train-*.parquet'), whose inline images are stored under OUT/images/ and
whose path-only images are looked up under --image-folder.

Exit codes: 0 written (convert) or nothing rejected (check); 1 something was rejected (check, or
convert with --strict); 2 unusable input: not JSON (line and column named), no record kept, a wrong
option or output; 3 an internal error (a bug), with its traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_lf.errors import EXIT_OK, EXIT_REJECTED, LlavaLfError

from .images import DEFAULT_MAX_PIXELS
from .records import Template
from .validate import printable


def _add_validation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, nargs="+",
                        help="LLaVA JSON array or JSON Lines file; or parquet shards: files, a folder, a glob pattern")
    parser.add_argument("--image-folder", type=Path, default=None,
                        help="the folder the 'image' paths start from (LLaVA JSON: required; parquet: for rows "
                             "whose image is a path without bytes)")
    parser.add_argument("--template", choices=list(Template.__args__), default="llava_v1",
                        help="the training template: llava_plain (stage 1) takes one image and one pair per record")
    parser.add_argument("--verify-images", action="store_true",
                        help="decode every image (in parallel): rejects undecodable, truncated and oversized ones")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="with --verify-images, reject images with more pixels (decompression bombs)")
    parser.add_argument("--workers", type=int, default=None, help="image verification processes (default: CPUs)")
    parser.add_argument("--cutoff-len", type=int, default=None,
                        help="trim conversations at turn boundaries to fit this many tokens, image tokens included")
    parser.add_argument("--tokenizer", "--model", dest="tokenizer", type=Path, default=None,
                        help="tokenizer or model folder for --cutoff-len (a Llava model folder also gives the "
                             "tokens per image)")
    parser.add_argument("--image-tokens", type=int, default=None,
                        help="tokens per image for --cutoff-len when --tokenizer has no Llava processor config")
    parser.add_argument("--allow-symlinks", action="store_true",
                        help="accept images reached through symlinks that lead out of --image-folder")


def _options(args: argparse.Namespace, absolute_paths: bool = False):
    from .convert import ConvertOptions

    return ConvertOptions(template=args.template, verify_images=args.verify_images, max_pixels=args.max_pixels,
                          workers=args.workers, cutoff_len=args.cutoff_len, tokenizer=args.tokenizer,
                          image_tokens=args.image_tokens, absolute_paths=absolute_paths,
                          allow_symlinks=args.allow_symlinks, progress=True)


def _json_source(args: argparse.Namespace) -> Path | None:
    """The LLaVA JSON file, or None for parquet shards."""
    from .parquet_reader import is_parquet_source

    if is_parquet_source(args.src):
        return None
    if args.image_folder is None:
        raise LlavaLfError(f"{args.src[0]}: a LLaVA JSON file needs --image-folder, the folder its 'image' paths "
                           "start from")
    return args.src[0]


def run_convert(args: argparse.Namespace) -> int:
    options = _options(args, args.absolute_paths)
    if (src := _json_source(args)) is None:
        from .parquet import convert_shards

        report = convert_shards(args.src, args.out, args.name, args.image_folder, options=options)
    else:
        from .convert import convert_file

        report = convert_file(src, args.image_folder, args.out, args.name, options=options)
    print(printable(report.summary()))
    return EXIT_REJECTED if args.strict and report.rejected else EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    if (src := _json_source(args)) is None:
        from .parquet import check_shards

        report = check_shards(args.src, args.image_folder, options=_options(args), rejected_path=args.report)
    else:
        from .convert import check_file

        report = check_file(src, args.image_folder, options=_options(args), rejected_path=args.report)
    print(printable(report.summary()))
    return EXIT_REJECTED if report.rejected else EXIT_OK


def add_subcommand(commands) -> None:
    convert = commands.add_parser("convert", help="LLaVA JSON -> a LLaMA-Factory dataset, with a rejection report",
                                  description="Writes OUT/NAME.jsonl, OUT/NAME.rejected.jsonl and the NAME entry "
                                              "of OUT/dataset_info.json. " + __doc__.split("\n\n")[1])
    _add_validation_options(convert)
    convert.add_argument("--out", type=Path, required=True, help="dataset folder (the host's dataset_dir)")
    convert.add_argument("--name", required=True, help="dataset name, as YAML 'dataset:' will refer to it")
    convert.add_argument("--strict", action="store_true", help="exit 1 when any record was rejected")
    convert.add_argument("--absolute-paths", action="store_true",
                         help="write absolute image paths (default: relative to --out, where the host looks)")
    convert.set_defaults(run=run_convert)

    check = commands.add_parser("check", help="validate LLaVA JSON as convert does, writing no dataset",
                                description="Exit 0 when every record is valid, 1 when any was rejected, 2 when "
                                            "the file is not JSON.")
    _add_validation_options(check)
    check.add_argument("--report", type=Path, default=None, help="also write every rejection to this JSONL file")
    check.set_defaults(run=run_check)
