"""Write a registered dataset again in modality-grouped order, as a new dataset beside it.

Reads `DIR/dataset_info.json` for the source's file and images column, streams the JSON Lines file once to
learn each row's modality and byte offset, then copies the rows in `grouped_order` into `NAME.jsonl` next to
the source (so relative image paths keep working) and registers it. Nothing is dropped: every source row
appears exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.training.modality import GroupedOrder, grouped_order


@dataclass(frozen=True)
class RegroupReport:
    source: Path
    output: Path
    name: str
    rows: int
    image_rows: int
    text_rows: int
    grouping: GroupedOrder

    def summary(self) -> str:
        g = self.grouping
        return (f"{self.name}: {self.rows} rows ({self.image_rows} with images, {self.text_rows} text-only) -> "
                f"{self.output}\n  {g.image_batches} image-only and {g.text_batches} text-only chunks of {g.batch}, "
                f"then a tail of {g.tail} leftover rows; train with `dataset: {self.name}` and "
                f"`disable_shuffling: true` (check: `optim_args: group_by_modality=true`, `report_to: [llava_lf]`)")


def _source_entry(dataset_dir: Path, name: str) -> tuple[dict, Path, str]:
    info_path = dataset_dir / "dataset_info.json"
    if not info_path.is_file():
        raise LlavaLfError(f"{info_path} not found; --dataset-dir must be the folder `llava-lf convert --out` wrote")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if name not in info:
        known = ", ".join(sorted(info)) or "none"
        raise LlavaLfError(f"dataset {name!r} is not in {info_path} (registered: {known})")
    entry = info[name]
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.endswith(".jsonl"):
        raise LlavaLfError(f"dataset {name!r}: file_name {file_name!r} is not one JSON Lines file; "
                           f"convert the data with `llava-lf convert` first")
    images_column = entry.get("columns", {}).get("images")
    if not images_column:
        raise LlavaLfError(f"dataset {name!r} has no columns.images in {info_path}, so every row would count "
                           f"as text-only; add \"images\": \"images\" to its columns")
    return entry, dataset_dir / file_name, images_column


def _scan(path: Path, images_column: str) -> tuple[list[int], list[bool]]:
    """Byte offset and has-image flag of every non-blank line."""
    import orjson
    from tqdm import tqdm

    offsets, has_image = [], []
    with open(path, "rb") as handle, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                          desc=f"reading {path.name}", mininterval=1.0) as progress:
        offset = 0
        for number, line in enumerate(handle, start=1):
            progress.update(len(line))
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as error:
                    raise LlavaLfError(f"{path}:{number}: not valid JSON ({error}); fix or re-convert that row") from error
                if not isinstance(row, dict):
                    raise LlavaLfError(f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}")
                images = row.get(images_column)
                if images is not None and not isinstance(images, list | str):
                    raise LlavaLfError(f"{path}:{number}: field {images_column!r} must be a list of image paths")
                offsets.append(offset)
                has_image.append(bool(images))
            offset += len(line)
    return offsets, has_image


def regroup_dataset(dataset_dir: Path, name: str, out_name: str | None = None, batch: int = 128,
                    seed: int = 42) -> RegroupReport:
    """Register `out_name` (default `NAME_grouped`): the rows of `name` in modality-grouped order."""
    from tqdm import tqdm

    from llava_lf.data.convert.writer import AtomicFile, update_dataset_info

    dataset_dir = Path(dataset_dir)
    out_name = out_name or f"{name}_grouped"
    if out_name == name:
        raise LlavaLfError("--out-name must differ from the source name; the source is left as it is")
    entry, source, images_column = _source_entry(dataset_dir, name)
    if not source.is_file():
        raise LlavaLfError(f"dataset {name!r}: {source} does not exist; run `llava-lf convert` again")
    offsets, has_image = _scan(source, images_column)
    grouping = grouped_order(has_image, batch, seed)
    output = dataset_dir / f"{out_name}.jsonl"
    target = AtomicFile(output)
    try:
        with open(source, "rb") as handle:
            for index in tqdm(grouping.order, desc=f"writing {output.name}", unit="row", mininterval=1.0):
                handle.seek(offsets[index])
                line = handle.readline()
                target.handle.write(line if line.endswith(b"\n") else line + b"\n")
    except BaseException:
        target.discard()
        raise
    target.commit()
    update_dataset_info(dataset_dir, out_name, {**entry, "file_name": output.name})
    n_image = sum(has_image)
    return RegroupReport(source, output, out_name, len(offsets), n_image, len(offsets) - n_image, grouping)
