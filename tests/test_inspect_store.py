"""Where inspect keeps its rows: a DuckDB database in a work folder under --out, bounded in memory, removed
afterwards, and removed by the next run when a run was killed before it could."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llava_lf.common.owner_lock import FOLDER_LOCK, abandoned, held_folder
from llava_lf.data.inspect import DatasetInput, InspectOptions, inspect_datasets, queries, store
from llava_lf.data.inspect.store import WORK_PREFIX

BIN = Path(sys.executable).parent


def _records(count: int) -> list[dict]:
    return [{"id": f"r{n}", "image": f"coco/{n % 500}.jpg",
             "conversations": [{"from": "human", "value": f"<image>\nWhat is item {n % 3000} {'word ' * (n % 40)}?"},
                               {"from": "gpt", "value": f"Item {n % 7000} is {'thing ' * (n % 60)}."}] * (1 + n % 3)}
            for n in range(count)]


def test_a_small_memory_limit_small_batches_and_texts_counted_in_parts_give_the_same_card(tmp_path, monkeypatch):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(_records(30_000)))
    inputs = [DatasetInput("data", data)]
    expected = inspect_datasets(inputs, InspectOptions(), tmp_path / "a")
    monkeypatch.setattr(store, "MEMORY_LIMIT", "24MB")
    monkeypatch.setattr(store, "BATCH", 1000)  # many small inserts too
    monkeypatch.setattr(queries, "PART_ROWS", 7000)  # and the texts counted in several parts
    assert inspect_datasets(inputs, InspectOptions(), tmp_path / "b") == expected
    card = expected["datasets"][0]
    assert card["diversity"]["distinct_questions"] == 3000 and card["images"]["uses"] == 0
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # work folders gone, and the roots made


def test_a_killed_run_leaves_a_work_folder_the_next_run_removes(tmp_path):
    """kill -9 mid-scan leaves the work folder behind (nothing can clean up); the next run removes it (the OS
    freed its lock when the run died) and keeps a folder whose lock a live run holds."""
    data = tmp_path / "big.json"
    data.write_text(json.dumps(_records(60_000)))
    out = tmp_path / "card"
    command = [str(BIN / "llava-lf"), "inspect", str(data), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(_held(folder) for folder in out.glob(f"{WORK_PREFIX}*")):
        assert process.poll() is None and time.monotonic() < deadline, "inspect ended before it held a work folder"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    left = list(out.glob(f"{WORK_PREFIX}*"))
    assert left, "the killed run's work folder is gone: nothing left to test"
    small = tmp_path / "small.json"
    small.write_text(json.dumps(_records(10)))
    with held_folder(out, WORK_PREFIX) as alive:  # a run still going (this process holds the lock)
        finished = subprocess.run([*command[:2], str(small), "--out", str(out)], capture_output=True, text=True,
                                  timeout=300)
        assert finished.returncode == 0, finished.stderr
        assert not any(folder.exists() for folder in left)
        assert (alive / FOLDER_LOCK).exists()
        assert [path for path in out.iterdir() if path.name.startswith(WORK_PREFIX)] == [alive]
    assert (out / "card.json").is_file() and not list(out.glob(f"{WORK_PREFIX}*"))


def _held(folder: Path) -> bool:
    """Whether a live run holds `folder`'s lock (taking a free one only for a moment)."""
    if not (folder / FOLDER_LOCK).exists():
        return False
    with abandoned(folder / FOLDER_LOCK) as free:
        return not free
