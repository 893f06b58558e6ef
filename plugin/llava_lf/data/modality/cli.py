"""`llava-lf group-modality`: put a converted dataset into LLaVA-1.5's modality-grouped training order."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_lf.errors import EXIT_OK


def run_group_modality(args: argparse.Namespace) -> int:
    from .regroup import regroup_dataset

    report = regroup_dataset(args.dataset_dir, args.name, args.out_name, batch=args.batch, seed=args.seed)
    print(report.summary())
    return EXIT_OK


def add_subcommand(commands) -> None:
    parser = commands.add_parser(
        "group-modality", help="reorder a dataset so every batch is all-image or all-text (LLaVA-1.5 stage 2)",
        description="Writes DIR/OUT_NAME.jsonl (every row of NAME, in modality-grouped order) and registers "
                    "OUT_NAME in DIR/dataset_info.json. Train on it with `disable_shuffling: true`.")
    parser.add_argument("--dataset-dir", type=Path, required=True, help="the host's dataset_dir")
    parser.add_argument("--name", required=True, help="registered dataset to reorder, e.g. llava_v1_5_mix665k")
    parser.add_argument("--out-name", default=None, help="name of the reordered dataset (default: NAME_grouped)")
    parser.add_argument("--batch", type=int, default=128,
                        help="chunk size: the global batch (default 128, LLaVA-1.5 stage 2); every "
                             "per_device_train_batch_size that divides it gets one modality per micro-batch")
    parser.add_argument("--seed", type=int, default=42, help="shuffling seed (default 42)")
    parser.set_defaults(run=run_group_modality)
