"""SIGKILL `llava-lf convert` anywhere: the previous dataset or the new one is there, never neither, never half.

Two kinds of kill: at random moments of a real `llava-lf convert` run, and at exact points (before and
after each rename, after each file is written and synced) by a wrapper that sends SIGKILL to itself
from inside `os.replace` / `os.fsync`. After every kill, `dataset_info.json` is valid JSON, each output
is byte for byte the old or the new one, and a registered dataset is complete; the next successful run
leaves no temporary file. `LLAVA_LF_KILLS=50` raises the number of random kills (default 6).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN
from PIL import Image

from llava_lf.data.convert.writer import TMP_PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KILLS = int(os.environ.get("LLAVA_LF_KILLS", "6"))

# Runs the real command line, killing itself with SIGKILL at the K-th call of os.replace or os.fsync.
WRAPPER = """
import os, signal, sys
from llava_lf.cli import main
call, k, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real, seen = getattr(os, call), [0]
def patched(*args, **kwargs):
    seen[0] += 1
    if seen[0] == k and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if seen[0] == k and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(os, call, patched)
main(sys.argv[4:])
"""


def _records(n: int, tag: str) -> list[dict]:
    rows = []
    for i in range(n):
        image = "a.png" if i % 7 else "missing.png"  # some rejected, so both outputs matter
        rows.append({"id": f"{tag}-{i}", "image": image, "conversations": [
            {"from": "human", "value": f"<image>\nWhat is shape {i}?"}, {"from": "gpt", "value": f"Shape {tag} {i}."}]})
    return rows


def _outputs(out: Path, name: str) -> dict[str, bytes | None]:
    return {file: (out / file).read_bytes() if (out / file).exists() else None
            for file in (f"{name}.jsonl", f"{name}.rejected.jsonl")}


def _assert_old_or_new(out: Path, name: str, old: dict, new: dict, others: dict) -> str:
    info = json.loads((out / "dataset_info.json").read_text())  # always valid JSON
    assert all(info.get(key) == value for key, value in others.items())  # other entries never lost
    now = _outputs(out, name)
    for file, content in now.items():
        assert content in (old[file], new[file]), f"{file} is neither the old nor the new one"
    if name in info:
        assert now[f"{name}.jsonl"] is not None, "registered, but the dataset file is missing"
    stray = [f for f in os.listdir(out) if f not in {*now, "dataset_info.json", ".dataset_info.json.lock"}
             and not f.startswith(TMP_PREFIX)]
    assert stray == []
    return "new" if now == new else "old" if now == old else "mixed"


@pytest.fixture()
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(images / "a.png")
    old_src, new_src = tmp_path / "old.json", tmp_path / "new.json"
    old_src.write_text(json.dumps(_records(50, "old")))
    new_src.write_text(json.dumps(_records(5_000, "new")))
    return tmp_path, images, old_src, new_src


def _convert_argv(src: Path, images: Path, out: Path, name: str) -> list[str]:
    return ["convert", str(src), "--image-folder", str(images), "--out", str(out), "--name", name]


def _state(tmp_path: Path, images: Path, src: Path | None, name: str, folder: str) -> tuple[Path, float]:
    """A dataset folder at a fixed depth (so relative image paths match) with `other` registered, `src` converted."""
    out = tmp_path / folder
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    started = time.monotonic()
    if src is not None:
        subprocess.run([str(BIN / "llava-lf"), *_convert_argv(src, images, out, name)], check=True,
                       capture_output=True, timeout=300)
    return out, time.monotonic() - started


@pytest.mark.parametrize("previous", [True, False], ids=["replacing", "first-run"])
def test_kills_leave_the_old_or_the_new_dataset_and_the_next_run_cleans_up(setup, previous):
    tmp_path, images, old_src, new_src = setup
    reference, seconds = _state(tmp_path, images, new_src, "mine", "reference")
    new = _outputs(reference, "mine")
    out, _ = _state(tmp_path, images, old_src if previous else None, "mine", "out")
    old = _outputs(out, "mine")
    saved = tmp_path / "saved"
    shutil.copytree(out, saved, symlinks=True)
    others = {"other": {"file_name": "other.json"}}
    argv = _convert_argv(new_src, images, out, "mine")
    outcomes = []

    # Exact points: before/after each rename (dataset, rejected list, dataset_info.json), after each fsync.
    points = [("replace", k, when) for k in (1, 2, 3) for when in ("before", "after")]
    points += [("fsync", k, "after") for k in (1, 2, 3)]
    for call, k, when in points:
        shutil.rmtree(out)  # each point is tried from the old state
        shutil.copytree(saved, out, symlinks=True)
        killed = subprocess.run([sys.executable, "-c", WRAPPER, call, str(k), when, *argv], capture_output=True,
                                timeout=300, check=False)
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr  # 0: the run had fewer such calls
        outcomes.append(_assert_old_or_new(out, "mine", old, new, others))

    # Random moments of the real console script.
    rng = random.Random(0)
    for _ in range(KILLS):
        process = subprocess.Popen([str(BIN / "llava-lf"), *argv], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, seconds * 1.1))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        outcomes.append(_assert_old_or_new(out, "mine", old, new, others))

    assert "old" in outcomes and "new" in outcomes  # the kills landed before, between and after the renames
    done = subprocess.run([str(BIN / "llava-lf"), *argv], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert _outputs(out, "mine") == new
    assert [f for f in os.listdir(out) if f.startswith(TMP_PREFIX)] == []  # the killed runs' files are gone
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == others["other"] and info["mine"]["file_name"] == "mine.jsonl"
