"""MMBench's TSV (LLaVA-1.5's dev files): rows as `model_vqa_mmbench.py` reads them, its prompt, and the
base64 images decoded once into a folder of files named by their bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.predict import PredictionRequest

OPTION_LETTERS = ("A", "B", "C", "D")
INSTRUCTIONS = {"en": "Answer with the option's letter from the given choices directly.", "cn": "请直接回答选项字母。"}
PREDICT_COLUMNS = ("index", "question", "hint", *OPTION_LETTERS, "image")
# A cell this short and all digits names the row whose image it shares (VLMEvalKit's TSVs do this).
_IMAGE_REFERENCE_MAX = 64
_IMAGE_SUFFIXES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _whole(value: object) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())


def _none_like(value: object) -> bool:
    """LLaVA's `is_none`: NaN, or the text nan/none in any case."""
    return _missing(value) or (isinstance(value, str) and value.lower() in ("nan", "none"))


@dataclass(frozen=True)
class MMBenchRow:
    index: int
    question: str
    hint: str | None  # None when LLaVA's `is_none` says so
    cells: tuple[str | None, ...]  # options A-D as the TSV holds them (None: empty or a value pandas reads as NaN)
    answer: str | None
    category: str | None
    l2_category: str | None
    image: str | None  # the base64 cell (None when the TSV was read without images)

    @property
    def prompt_options(self) -> list[str]:
        """The options LLaVA shows: A, B, ... up to the first none-like value."""
        shown = []
        for cell in self.cells:
            if _none_like(cell):
                break
            shown.append(cell)
        return shown

    @property
    def choices(self) -> dict[str, str]:
        """Every option the TSV fills, by letter: what the MMBench scorer matches answers against."""
        return {letter: cell for letter, cell in zip(OPTION_LETTERS, self.cells) if cell is not None}


def read_table(path: Path, images: bool):
    """The TSV through pandas, as LLaVA reads it (its NaN rules included), every cell but `index` kept as
    text; the image column only when `images`."""
    import pandas as pd

    if not path.is_file():
        raise LlavaLfError(f"{path} not found; --data must be LLaVA's MMBench TSV "
                               "(mmbench_dev_20230712.tsv, or mmbench_dev_cn_20231003.tsv for MMBench-CN)")
    try:
        header = list(pd.read_csv(path, sep="\t", nrows=0).columns)
        wanted = [name for name in header if images or name != "image"]
        table = pd.read_csv(path, sep="\t", usecols=wanted, dtype={name: str for name in wanted if name != "index"})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise LlavaLfError(f"{path}: not a readable tab-separated file ({error}); "
                               "use the MMBench TSV as released") from None
    needed = PREDICT_COLUMNS if images else ("index", "question", *OPTION_LETTERS)
    absent = [name for name in needed if name not in table.columns]
    if absent:
        raise LlavaLfError(f"{path} lacks the column(s) {', '.join(absent)}; it has {', '.join(header)}. "
                               "Use the MMBench TSV as released (14 columns: index, question, hint, A-D, answer, ...)")
    if not pd.api.types.is_integer_dtype(table["index"]):
        values = table["index"].tolist()
        bad = next((value for value in values if not _whole(value)), values[0])
        raise LlavaLfError(f"{path}: column `index` holds {bad!r}, not an integer; every row needs its integer index")
    duplicated = table["index"][table["index"].duplicated()].tolist()
    if duplicated:
        raise LlavaLfError(f"{path}: index {duplicated[0]} appears on more than one row; indices must be unique")
    return table


def rows_of(table, path: Path) -> list[MMBenchRow]:
    rows = []
    for record in table.to_dict("records"):
        index = int(record["index"])
        if _missing(record["question"]):
            raise LlavaLfError(f"{path}: row with index {index} has no question; use the TSV as released")
        text = {name: (None if _missing(record.get(name)) else record[name])
                for name in ("hint", "answer", "category", "l2-category", "image")}
        rows.append(MMBenchRow(index, record["question"], None if _none_like(text["hint"]) else text["hint"],
                               tuple(None if _missing(record[letter]) else record[letter] for letter in OPTION_LETTERS),
                               text["answer"], text["category"], text["l2-category"], text["image"]))
    return rows


def load_rows(path: Path, images: bool = False) -> list[MMBenchRow]:
    return rows_of(read_table(path, images), path)


def prompt_text(row: MMBenchRow) -> str:
    """What LLaVA stores as the prompt: `hint\\n` when there is one, the question, then one `\\nA. option`
    line per shown option."""
    text = row.question if row.hint is None else f"{row.hint}\n{row.question}"
    return text + "".join(f"\n{letter}. {option}" for letter, option in zip(OPTION_LETTERS, row.prompt_options))


def _suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _IMAGE_SUFFIXES if data.startswith(magic)), ".img")


@dataclass(frozen=True)
class ImageCache:
    paths: dict[int, Path]  # row index -> decoded image file
    files: int  # distinct images
    written: int  # files written by this call (the others were there already)


def _encoded_image(row: MMBenchRow, by_index: dict[int, MMBenchRow], path: Path) -> str:
    cell = row.image
    if cell is not None and len(cell) <= _IMAGE_REFERENCE_MAX and cell.strip().isdigit():
        target = by_index.get(int(cell))
        cell = None if target is None else target.image
    if cell is None:
        raise LlavaLfError(f"{path}: row with index {row.index} has no image (column `image`); "
                               "use the MMBench TSV as released, which carries every image in base64")
    return cell


def decode_images(rows: Sequence[MMBenchRow], folder: Path, path: Path, count: int | None = None) -> ImageCache:
    """The image of each of the first `count` rows (all by default) as a file in `folder`, named by a digest
    of its bytes: identical images are one file, and a file already there is not written again (so a
    resumed run decodes nothing)."""
    from PIL import Image, UnidentifiedImageError

    folder.mkdir(parents=True, exist_ok=True)
    by_index = {row.index: row for row in rows}
    by_cell: dict[str, Path] = {}
    paths: dict[int, Path] = {}
    written = 0
    for row in rows[:count]:
        cell = _encoded_image(row, by_index, path)
        if cell not in by_cell:
            try:
                data = base64.b64decode(cell)
            except (binascii.Error, ValueError) as error:
                raise LlavaLfError(f"{path}: row with index {row.index}, column `image`: not base64 ({error}); "
                                       "use the MMBench TSV as released") from None
            target = folder / f"{hashlib.sha256(data).hexdigest()[:24]}{_suffix(data)}"
            if not target.is_file():
                try:
                    Image.open(io.BytesIO(data))
                except (UnidentifiedImageError, OSError) as error:
                    raise LlavaLfError(f"{path}: row with index {row.index}, column `image`: the decoded bytes "
                                           f"are not an image ({error}); use the MMBench TSV as released") from None
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(data)
                os.replace(partial, target)  # a killed run never leaves a torn image under the final name
                written += 1
            by_cell[cell] = target
        paths[row.index] = by_cell[cell]
    return ImageCache(paths, len(set(by_cell.values())), written)


def prediction_requests(rows: Sequence[MMBenchRow], images: dict[int, Path], lang: str) -> list[PredictionRequest]:
    """One request per row (circular copies included): the model sees the prompt and LLaVA's instruction
    line; the answer file stores the prompt without it, with the TSV's integer index as question_id."""
    requests = []
    for row in rows:
        prompt = prompt_text(row)
        requests.append(PredictionRequest(str(row.index), f"{prompt}\n{INSTRUCTIONS[lang]}", images[row.index],
                                          question_id=row.index, prompt=prompt))
    return requests
