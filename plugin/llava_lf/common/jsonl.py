"""Benchmark files as rows: JSON Lines (blank lines skipped), with a bad line named by its number."""

from __future__ import annotations

import json
from pathlib import Path


def read_json_rows(path: Path, error: type[Exception], allow_array: bool = False) -> list[dict]:
    """The rows of `path`; `allow_array` also takes a JSON array. A line that is not JSON raises `error`."""
    text = path.read_text(encoding="utf-8")
    if allow_array and text.lstrip().startswith("["):
        return json.loads(text)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as problem:
                raise error(f"{path}, line {number}: not JSON ({problem})") from None
    return rows
