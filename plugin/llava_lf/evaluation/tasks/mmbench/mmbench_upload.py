"""MMBench's submission workbook as LLaVA's `convert_mmbench_for_submission.py` writes it: every TSV row,
six columns dropped, the raw answer text in a `prediction` column at position 6."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DROPPED_COLUMNS = ("hint", "category", "source", "image", "comment", "l2-category")
PREDICTION_COLUMN = "prediction"
PREDICTION_POSITION = 6
SHEET_NAME = "Sheet1"  # what pandas' to_excel names the sheet


@dataclass(frozen=True)
class CleanedCell:
    index: int  # the row's TSV index
    column: str
    removed: int  # control characters taken out


@dataclass
class UploadSheet:
    header: list[str]
    rows: list[list[object]]
    cleaned: list[CleanedCell] = field(default_factory=list)

    @property
    def removed_characters(self) -> int:
        return sum(cell.removed for cell in self.cleaned)


def _excel_value(value: object) -> object:
    # pandas writes NaN as an empty cell
    return None if isinstance(value, float) and value != value else value


def upload_sheet(table, answers: Mapping[int, str]) -> UploadSheet:
    """The workbook's content. `table` is the TSV (its image column may be left out: it is dropped anyway);
    `answers` maps a TSV index to the answer text; rows without one get an empty prediction.

    Excel cannot hold the control characters U+0000-U+0008, U+000B, U+000C and U+000E-U+001F (openpyxl
    refuses them, which crashes LLaVA's converter); they are removed, and every cell that lost some is
    listed."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    kept = [name for name in table.columns if name not in DROPPED_COLUMNS]
    position = min(PREDICTION_POSITION, len(kept))
    header = kept[:position] + [PREDICTION_COLUMN] + kept[position:]
    sheet = UploadSheet(header, [])
    for record in table[kept].to_dict("records"):
        index = int(record["index"])
        values = {name: _excel_value(record[name]) for name in kept} | {PREDICTION_COLUMN: answers.get(index)}
        values["index"] = index
        row = []
        for name in header:
            value = values[name]
            if isinstance(value, str):
                clean, removed = ILLEGAL_CHARACTERS_RE.subn("", value)
                if removed:
                    sheet.cleaned.append(CleanedCell(index, name, removed))
                value = clean
            row.append(value)
        sheet.rows.append(row)
    return sheet


def write_workbook(sheet: UploadSheet, path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    worksheet = book.create_sheet(SHEET_NAME)
    worksheet.append(sheet.header)
    for row in sheet.rows:
        worksheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
