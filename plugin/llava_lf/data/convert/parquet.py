"""Parquet shards (LLaVA-NeXT-Data's layout) -> the same dataset, report and registration as LLaVA JSON: the rows
go through the JSON path's pipeline (`convert._pipeline`), with `image_store.ImageStore` for their images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .convert import ConvertOptions, check_records, write_dataset
from .image_store import ImageStore
from .outputs import check_image_folder, check_not_inputs, plan_convert_outputs
from .parquet_reader import Shards, find_shards, iter_batches
from .paths import ImageFolder
from .reader import SourceRecord
from .report import ConversionReport

__all__ = ["check_shards", "convert_shards"]

LARGE_ROW_GROUP = 128_000_000  # bytes (uncompressed) of one row group beyond which the note on memory is given


def _describe(shards: Shards) -> str:
    first = shards.files[0]
    return str(first) if len(shards.files) == 1 else f"{first.parent}/ ({len(shards.files)} parquet shards)"


def _rows(shards: Shards, store: ImageStore, options: ConvertOptions) -> Iterator[SourceRecord]:
    rows = store.ahead(iter_batches(shards))
    if not options.progress:
        yield from rows
        return
    from tqdm import tqdm

    with tqdm(total=shards.rows, unit="row", unit_scale=True, desc="parquet", disable=None) as bar:
        for row in rows:
            yield row
            bar.update(1)


def _row_group_note(shards: Shards) -> list[str]:
    """pyarrow reads a whole row group at a time: memory follows the largest one, said when it is large."""
    size, where = shards.largest_row_group
    if size <= LARGE_ROW_GROUP:
        return []
    return [f"{where} holds {size / 1e6:,.0f} MB: memory peaks near twice that (pyarrow reads a whole row group); "
            "rewrite the shards with smaller row groups (datasets writes 100 rows each) to keep it low"]


def _store(shards: Shards, out_dir: Path | None, image_folder: Path | None, options: ConvertOptions) -> ImageStore:
    folder = None
    if image_folder is not None:
        folder = ImageFolder(image_folder, out_dir if out_dir is not None else image_folder, options.absolute_paths,
                             options.allow_symlinks)
    # --verify-images decodes each image in the store's threads, before it is stored: no rejected row's image is kept
    return ImageStore(out_dir, folder, options.absolute_paths, options.max_pixels, decode=options.verify_images,
                      carry=("data_source",) if shards.has_data_source else (), threads=options.workers)


def convert_shards(sources: list[Path], out_dir: Path, name: str, image_folder: Path | None = None,
                   options: ConvertOptions | None = None) -> ConversionReport:
    """Convert parquet shards (files, folders, glob patterns) to `out_dir/name.jsonl`, their inline images
    stored once each under `out_dir/images/`, and register the dataset; as `convert_file` otherwise."""
    options = options or ConvertOptions()
    shards = find_shards([Path(source) for source in sources])
    image_folder = Path(image_folder) if image_folder is not None else None
    plan = plan_convert_outputs(None, image_folder, Path(out_dir), name, inputs=shards.files)
    report = ConversionReport(source=_describe(shards), output=str(plan.dataset), rejected_path=str(plan.rejected))
    report.notes.extend(_row_group_note(shards))
    store = _store(shards, plan.folder, image_folder, options)
    return write_dataset(plan, name, _rows(shards, store, options), store, options, report)


def check_shards(sources: list[Path], image_folder: Path | None = None, options: ConvertOptions | None = None,
                 rejected_path: Path | None = None) -> ConversionReport:
    """Validate parquet shards as `convert_shards` does, writing no dataset and no image."""
    options = options or ConvertOptions()
    shards = find_shards([Path(source) for source in sources])
    problems = check_image_folder(Path(image_folder)) if image_folder is not None else []
    if rejected_path is not None:
        problems += check_not_inputs([Path(rejected_path)], shards.files)
    if problems:
        raise LlavaLfError(problems)
    report = ConversionReport(source=_describe(shards), output=None,
                              rejected_path=str(rejected_path) if rejected_path is not None else None)
    report.notes.extend(_row_group_note(shards))
    store = _store(shards, None, Path(image_folder) if image_folder is not None else None, options)
    return check_records(_rows(shards, store, options), store, options, report, rejected_path)
