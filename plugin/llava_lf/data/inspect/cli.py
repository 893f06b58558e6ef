"""`llava-lf inspect`: a data card for one or more LLaVA datasets, side by side, before any GPU time is spent."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from llava_lf.errors import EXIT_OK, LlavaLfError


def run_inspect(args: argparse.Namespace) -> int:
    from .card import write_card
    from .options import DatasetInput, InspectOptions
    from .scan import inspect_datasets

    datasets = [DatasetInput.parse(text) for text in args.data]
    folders = args.image_folder or []
    if len(folders) > 1:  # one per dataset, in order
        if len(folders) != len(datasets):
            raise LlavaLfError(f"{len(folders)} --image-folder for {len(datasets)} datasets: give one for all, or "
                               "one per dataset in the same order")
        datasets = [replace(data, image_folder=folder) for data, folder in zip(datasets, folders)]
    options = InspectOptions(image_folder=folders[0] if len(folders) == 1 else None, template=args.template,
                             tokenizer=args.tokenizer, cutoff_len=args.cutoff_len, image_tokens=args.image_tokens,
                             image_headers=not args.no_image_headers, near_duplicates=args.near_duplicates,
                             max_distance=args.max_distance, workers=args.workers, model=args.model)
    card = inspect_datasets(datasets, options, args.out)
    written = write_card(card, args.out)
    for data in card["datasets"]:
        print(f"{data['label']}: {data['composition']['records']:,} records, {data['composition']['with_image']:,} "
              f"with an image, {data['problems']['rejected']:,} the converter would reject, "
              f"{data['diversity']['exact_duplicate_records']:,} exact duplicates, {data['images']['missing']:,} "
              "missing images")
    for data in card["datasets"]:
        if data.get("model"):
            model = data["model"]
            print(f"{data['label']} under {card['options']['model']['name']}: {model['samples']:,} samples, "
                  f"cutoff_len keeping 99% whole {model['keep_99'] or '–'}, 100% {model['keep_100'] or '–'}"
                  + (f" ({model['unknown']:,} with an image of unknown size left out)" if model["unknown"] else ""))
    print(f"data card: {written[1]} (figures in {written[0].name}, {len(written) - 2} charts)")
    return EXIT_OK


def add_subcommand(commands) -> None:
    from .options import TEMPLATES

    inspect = commands.add_parser(
        "inspect", help="a data card (card.md, card.json, charts) of LLaVA datasets, side by side",
        description="Reads each dataset once, as a stream (bounded memory), and writes OUT/card.md, OUT/card.json and "
                    "PNG charts: composition, lengths, diversity, images, and the problems to fix before training.")
    inspect.add_argument("data", nargs="+", help="LLaVA JSON/JSONL or a dataset `llava-lf convert` wrote; "
                                                 "LABEL=PATH names its column")
    inspect.add_argument("--image-folder", type=Path, action="append", default=None,
                         help="the folder a LLaVA file's 'image' paths start from: once for all datasets, or once "
                              "per dataset in order (without it, images are not looked at); a converted dataset's "
                              "paths start from its own folder")
    inspect.add_argument("--out", type=Path, required=True,
                         help="folder for card.md, card.json and the charts (and, during the run, its database)")
    inspect.add_argument("--template", choices=TEMPLATES, default=None,
                         help="the training template: token counts and the converter's checks (llava_plain: stage 1; "
                              "default: a --model preset's chat format, else llava_v1)")
    inspect.add_argument("--tokenizer", type=Path, default=None,
                         help="tokenizer or model folder: tokens per record, image tokens included")
    inspect.add_argument("--model", default=None,
                         help="a llava-hf LLaVA-1.5 / LLaVA-NeXT checkpoint folder (its processor and tokenizer files, "
                              "no weights) or an assembly preset (llava1_5_7b, llava1_6_vicuna_7b, ...): image tokens "
                              "per record as that model counts them (NeXT: from each image's size), the share over "
                              "candidate cutoff_len values and the smallest that keeps 99%% / 100%% whole")
    inspect.add_argument("--cutoff-len", type=int, default=None,
                         help="with --tokenizer: how many records and turns this cutoff would cut; with --model: "
                              "one more candidate")
    inspect.add_argument("--image-tokens", type=int, default=None,
                         help="tokens per image when --tokenizer has no Llava processor config (default 576)")
    inspect.add_argument("--near-duplicates", action="store_true",
                         help="decode every image for a perceptual hash and list near-duplicate groups (slow)")
    inspect.add_argument("--max-distance", type=int, default=4,
                         help="with --near-duplicates: hash bits (of 64) two near duplicates may differ in")
    inspect.add_argument("--workers", type=int, default=None, help="near-duplicate hashing processes (default: CPUs)")
    inspect.add_argument("--no-image-headers", action="store_true",
                         help="check that images exist but do not read their sizes")
    inspect.set_defaults(run=run_inspect)
