"""Stream the rows of Hugging Face parquet shards (lmms-lab/LLaVA-NeXT-Data's layout) as LLaVA-shaped records.

The layout: `conversations` (a list of {from, value}), optional `id` and `data_source`, and the images as the
`datasets` library's Image feature, a struct {bytes, path}, in `image` (one struct, or a list of them) or `images`
(a list). Rows come a batch at a time through pyarrow's buffered reader (pages, not whole row groups, are held),
so memory depends on the batch, not on the shard or the row count. Every shard's footer and columns are checked
before the first row is read: a broken or foreign shard stops the run before anything is written.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .reader import SourceRecord

BATCH_ROWS = 64  # rows decoded at a time: with 100 KB images about 6 MB of bytes
_READ_BUFFER = 1 << 20  # pyarrow reads column chunks through a buffer of this size instead of whole
_IMAGE_COLUMNS = ("image", "images")
_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class ImageRef:
    """One image of a row as the Image feature stores it: inline bytes, a path, both, or neither."""

    data: bytes | memoryview | None  # a view into the batch's buffer when read from a binary field
    path: str | None
    checked: tuple | None = None  # what `ImageStore.inspect` found, when done ahead (in a thread)


@dataclass(frozen=True)
class Shards:
    files: list[Path]
    rows: int
    image_column: str | None  # None: no shard has images (a text-only set)
    has_id: bool
    has_data_source: bool  # written on every output record when any shard has the column
    largest_row_group: tuple[int, str] = (0, "")  # (bytes, "shard row group N"): pyarrow holds a whole row group


def is_parquet_source(sources: list[Path]) -> bool:
    """Parquet input: several paths, a folder holding .parquet files, a glob pattern, a `.parquet` file or a file
    starting with PAR1."""
    if len(sources) != 1:
        return True
    source = sources[0]
    if _GLOB_CHARS & set(str(source)) and not source.exists():
        return True
    if source.is_dir():
        return next(source.rglob("*.parquet"), None) is not None
    if source.suffix == ".parquet":
        return True
    try:
        with open(source, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def find_shards(sources: list[Path]) -> Shards:
    """The shards named by files, folders (every *.parquet below) and glob patterns, checked; sorted by path."""
    import pyarrow.parquet as pq

    files: list[Path] = []
    problems: list[str] = []
    for source in sources:
        if source.is_dir():
            found = sorted(source.rglob("*.parquet"))
            if not found:
                problems.append(f"{source}: a folder with no .parquet file below it; pass the shards' folder")
        elif _GLOB_CHARS & set(str(source)) and not source.exists():
            found = sorted(Path(name) for name in glob.glob(str(source), recursive=True))
            if not found:
                problems.append(f"{source}: no file matches the pattern; check the path (quote it so the shell "
                                "leaves it to llava-lf)")
        else:
            found = [source]
        files += [path for path in found if path not in files]
    rows, columns, largest = 0, [], (0, "")
    for path in files:
        try:
            metadata = pq.read_metadata(path)
            names = pq.read_schema(path).names
        except OSError as error:
            problems.append(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})")
            continue
        except Exception as error:  # pyarrow's ArrowInvalid: not parquet, or a truncated footer
            problems.append(f"{path}: not a readable parquet file ({error}); re-download it")
            continue
        if "conversations" not in names:
            problems.append(f"{path}: no 'conversations' column (columns: {', '.join(names[:12])}); expected "
                            "LLaVA-NeXT-Data's layout: id, conversations [{from, value}], data_source, image")
        if len([name for name in _IMAGE_COLUMNS if name in names]) > 1:
            problems.append(f"{path}: both 'image' and 'images' columns; keep one")
        rows += metadata.num_rows
        columns.append(set(names))
        for group in range(metadata.num_row_groups):
            largest = max(largest, (metadata.row_group(group).total_byte_size, f"{path.name} row group {group}"))
    if problems:
        raise LlavaLfError(problems)
    if not files:
        raise LlavaLfError("no parquet shard given; pass a file, a folder or a pattern such as 'data/train-*.parquet'")
    image_columns = {name for names in columns for name in _IMAGE_COLUMNS if name in names}
    if len(image_columns) > 1:
        raise LlavaLfError("some shards name their images 'image', others 'images'; convert them separately")
    return Shards(files, rows, next(iter(image_columns), None), any("id" in names for names in columns),
                  any("data_source" in names for names in columns), largest)


def _refs(value: object) -> list[ImageRef] | object:
    """A cell of the image column as ImageRefs: a struct, a list of structs, a bare path or bytes; else as read."""
    if value is None:
        return []
    if type(value) is dict:
        data, path = value.get("bytes"), value.get("path")
        if (data is None or type(data) is bytes) and (path is None or type(path) is str):
            return [ImageRef(data, path or None)]
        return value
    if type(value) is str:
        return [ImageRef(None, value)]
    if type(value) is bytes:
        return [ImageRef(value, None)]
    if type(value) is list:
        refs = [_refs(item) if item is not None else [ImageRef(None, None)] for item in value]
        if all(type(ref) is list for ref in refs):
            return [ref for one in refs for ref in one]
    return value  # mistyped: the validator reports it


def _struct_refs(array) -> list[ImageRef | None] | None:
    """Image feature structs as ImageRefs (None where the struct is null), the bytes as views of the batch's buffer
    (no copy); None when the struct's fields are not {bytes: binary, path: string}."""
    import pyarrow as pa

    fields = {field.name: field.type for field in array.type}
    if not set(fields) <= {"bytes", "path"} or not (pa.types.is_binary(fields.get("bytes", pa.binary())) or
                                                   pa.types.is_large_binary(fields["bytes"])) or \
            not pa.types.is_string(fields.get("path", pa.string())):
        return None
    blobs = array.field("bytes") if "bytes" in fields else None
    paths = array.field("path").to_pylist() if "path" in fields else [None] * len(array)
    refs: list[ImageRef | None] = []
    for position, valid in enumerate(array.is_valid().to_pylist()):
        if not valid:
            refs.append(None)
            continue
        blob = blobs[position] if blobs is not None else None
        data = memoryview(blob.as_buffer()) if blob is not None and blob.is_valid else None
        refs.append(ImageRef(data, paths[position] or None))
    return refs


def _image_cells(column) -> list:
    """A batch's image column as one cell per row: a list of ImageRefs, or the value as read when mistyped."""
    import pyarrow as pa

    if pa.types.is_struct(column.type) and (refs := _struct_refs(column)) is not None:
        return [[ref] if ref is not None else [] for ref in refs]
    if pa.types.is_list(column.type) and pa.types.is_struct(column.type.value_type):
        values = _struct_refs(column.flatten())
        if values is not None:
            cells, start = [], 0
            for length in column.value_lengths().to_pylist():
                items = values[start:start + (length or 0)]
                cells.append([ref if ref is not None else ImageRef(None, None) for ref in items])
                start += length or 0
            return cells
    return [_refs(value) for value in column.to_pylist()]


def _conversations(value: object) -> object:
    """A list of turns as read; a JSON string (some sets store the turns so) parsed, or left for the validator."""
    if type(value) is str:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def iter_batches(shards: Shards, batch_rows: int = BATCH_ROWS) -> Iterator[list[SourceRecord]]:
    """Every row of every shard, in order and a batch at a time, as a LLaVA record; `image` holds the row's
    `ImageRef`s."""
    import pyarrow.parquet as pq

    index = 0
    for path in shards.files:
        handle = pq.ParquetFile(path, buffer_size=_READ_BUFFER, pre_buffer=False)
        names = handle.schema_arrow.names
        wanted = [name for name in ("id", "conversations", "data_source", shards.image_column) if name in names]
        row = 0
        for batch in handle.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False):
            columns = {name: _image_cells(batch.column(name)) if name == shards.image_column else
                       batch.column(name).to_pylist() for name in wanted}
            rows = []
            for position in range(batch.num_rows):
                record = {"conversations": _conversations(columns["conversations"][position])}
                if "id" in columns and (rid := columns["id"][position]) is not None:
                    record["id"] = rid
                if shards.has_data_source:
                    record["data_source"] = columns["data_source"][position] if "data_source" in columns else None
                if shards.image_column is not None:
                    record["image"] = columns[shards.image_column][position] if shards.image_column in columns else []
                rows.append(SourceRecord(index, None, record, f"{path.name} row {row}"))
                index += 1
                row += 1
            yield rows
        handle.close()
