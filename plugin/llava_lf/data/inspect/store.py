"""The rows a scan gathers, in a disk-backed DuckDB database under a memory limit, so memory stays bounded however
large the file; it lives in a held work folder (`owner_lock`) that a killed run's successor removes."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np

from llava_lf.common.owner_lock import held_folder, remove_abandoned_folders
from llava_lf.data.convert.validate import printable

from .figures import opening_sql

WORK_PREFIX = ".llava-lf-inspect-"  # then random characters: the work folder under the output folder
MEMORY_LIMIT = "160MB"  # DuckDB's buffers; past it, it spills to the work folder
BATCH = 1 << 15  # rows buffered before an insert
_SURROGATE = re.compile("[\ud800-\udfff]")
KEY_CHARS = 256  # texts are compared on their first characters: a ShareGPT answer runs to kilobytes

# Each table's columns and their SQL types, as a batch brings them; a row is a tuple in this order.
TABLES = {
    "records": {"idx": "BIGINT", "line": "BIGINT", "rid": "VARCHAR", "converted": "BOOLEAN", "readable": "BOOLEAN",
                "images": "INTEGER", "source": "VARCHAR", "type": "VARCHAR", "told_by": "VARCHAR", "pairs": "INTEGER",
                "words": "INTEGER", "content": "BIGINT", "refusals": "INTEGER", "refusal": "VARCHAR",
                "empty_answers": "INTEGER", "non_latin": "BOOLEAN"},
    "problems": {"idx": "BIGINT", "reason": "VARCHAR", "field": "VARCHAR", "message": "VARCHAR", "fix": "VARCHAR"},
    "tokens": {"tokens": "INTEGER", "fit": "VARCHAR", "pairs_cut": "INTEGER"},  # fit NULL: no cutoff
    "questions": {"text": "VARCHAR"},
    "answers": {"text": "VARCHAR", "words": "INTEGER", "type": "VARCHAR"},
    "uses": {"use": "BIGINT", "written": "VARCHAR", "file": "VARCHAR", "idx": "BIGINT"},  # file NULL: refused
    # --model: each record the converter keeps, its text tokens (images apart) and `data_source` (NULL: none)
    "samples": {"idx": "BIGINT", "text": "BIGINT", "images": "INTEGER", "data_source": "VARCHAR"},
    "headers": {"file": "VARCHAR", "first": "BIGINT", "written": "VARCHAR", "width": "INTEGER", "height": "INTEGER",
                "ratio": "VARCHAR", "format": "VARCHAR", "why": "VARCHAR"},  # why: unreadable
}
# Columns DuckDB adds as it inserts a batch, on the inserting thread (no GIL): each text cut to KEY_CHARS, its
# hash, and a question's first two words.
_DERIVED = {"questions": "h UBIGINT, opening VARCHAR", "answers": "h UBIGINT"}
_INSERT = {"questions": f"SELECT t, hash(t), {opening_sql('t')} FROM (SELECT left(text, {KEY_CHARS}) AS t "
                        "FROM batch)",
           "answers": f"SELECT left(text, {KEY_CHARS}) AS t, words, type, hash(t) FROM batch"}


@contextmanager
def work_folder(root: Path) -> Iterator[Path]:
    """A folder under `root` for the databases, removed afterwards (and `root` with it when this made it and it is
    empty, so a failed run leaves no empty --out); folders of killed runs go first."""
    made = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned_folders(root, WORK_PREFIX)
    try:
        with held_folder(root, WORK_PREFIX) as folder:
            yield folder
    finally:
        if made and not any(root.iterdir()):
            root.rmdir()


def connect(database: Path) -> duckdb.DuckDBPyConnection:
    """A new database with the tables; DuckDB spills to the folder it is in past MEMORY_LIMIT."""
    con = duckdb.connect(str(database), config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(database.parent),
                                                "preserve_insertion_order": False})
    for name, columns in TABLES.items():
        given = ", ".join(f"{column} {kind}" for column, kind in columns.items())
        con.execute(f"CREATE TABLE {name} ({given}{', ' + _DERIVED[name] if name in _DERIVED else ''})")
    return con


class Inserts:
    """Batches inserted by a thread of their own (DuckDB releases the GIL, so its work overlaps the parsing); as a
    context, the exit waits for every insert and raises the first that failed."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(con,), daemon=True)

    def __enter__(self) -> Inserts:
        self._thread.start()
        return self

    def __exit__(self, *raised) -> None:
        self._queue.put(None)
        self._thread.join()  # before the connection can be closed
        if self._failed is not None and raised[0] is None:
            raise self._failed

    def put(self, insert: str, batch: dict[str, np.ndarray]) -> None:
        if self._failed is not None:
            raise self._failed
        self._queue.put((insert, batch))

    def _run(self, con: duckdb.DuckDBPyConnection) -> None:
        while (item := self._queue.get()) is not None:
            insert, batch = item  # `batch`: DuckDB's replacement scan finds it here
            if self._failed is None:
                try:
                    con.execute(insert)
                except BaseException as error:  # raised in the scanning thread, at its next put or the exit
                    self._failed = error


class Table:
    """Rows for one table, inserted `BATCH` at a time: whole rows (`add`) or parallel column lists (`extend`)."""

    def __init__(self, inserts: Inserts, name: str):
        self._inserts, self._name, self._kinds = inserts, name, TABLES[name]
        self._rows: list[tuple] = []
        self._columns: list[list] = [[] for _ in self._kinds]

    def add(self, row: tuple) -> None:
        self._rows.append(row)
        if len(self._rows) >= BATCH:
            self.flush()

    def extend(self, *columns) -> None:
        any(map(list.extend, self._columns, columns))  # a C-level loop: this runs for every record
        if len(self._columns[0]) >= BATCH:
            self.flush()

    def flush(self) -> None:
        columns = list(zip(*self._rows)) if self._rows else self._columns
        if not columns or not columns[0]:
            return
        batch = {name: _array(values, kind) for (name, kind), values in zip(self._kinds.items(), columns)}
        self._rows, self._columns = [], [[] for _ in self._kinds]
        self._inserts.put(f"INSERT INTO {self._name} {_INSERT.get(self._name, 'SELECT * FROM batch')}", batch)


_NUMPY = {"BIGINT": np.int64, "INTEGER": np.int64, "BOOLEAN": np.bool_}


def _array(values, kind: str) -> np.ndarray:
    if kind != "VARCHAR":  # numbers as numpy's own: DuckDB reads them without taking the GIL from the scan
        return np.array(values, dtype=object if None in values else _NUMPY[kind])
    try:
        ascii_only = all(map(str.isascii, values))  # a flag CPython keeps on each string: no scan
    except TypeError:  # a None among them
        ascii_only = all(value is None or value.isascii() for value in values)
    if not ascii_only and _SURROGATE.search("".join(value or "" for value in values)):
        values = [value if value is None else printable(value) for value in values]  # no UTF-8: its escape
    return np.array(values, dtype=object)
