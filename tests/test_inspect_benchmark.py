"""The inspect benchmark script runs end to end on a tiny input, so it cannot rot. Checked is what it measured:
each timed `llava-lf inspect` read the whole generated file (its card counts what the file holds, counted here
independently), the image run read every header and the run without headers none, and the printed row is the
recorded one. The script's own guard (it fails when a card disagrees with its file) is checked below."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


def test_inspect_benchmark_runs_on_a_tiny_input(tmp_path):
    figures, work = tmp_path / "figures.json", tmp_path / "work"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/inspect_throughput.py"), "--sizes", "300",
                           "--images", "12", "--keep", str(work), "--json", str(figures)],
                          timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(figures.read_text())
    [row] = result["records"]
    records = json.loads((work / "mix_300.json").read_text())  # the generated file, read here with plain json
    card = json.loads((work / "card_300" / "card.json").read_text())["datasets"][0]
    assert row["records"] == card["composition"]["records"] == len(records) == 300
    assert card["composition"]["with_image"] == sum("image" in record for record in records)
    assert card["diversity"]["questions"] == sum(len(record["conversations"]) // 2 for record in records)
    assert row["seconds"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 0  # os.wait4 saw the child run
    printed = f"{row['records']:>9,} {row['file_mb']:>8.0f} {row['seconds']:>7.1f} {row['records_per_s']:>10,.0f}"
    assert printed in done.stdout  # the printed row is the recorded one

    with_headers, without = (json.loads((work / name / "card.json").read_text())["datasets"][0]["images"]
                             for name in ("card_images", "card_images_off"))
    assert with_headers["width"]["count"] == with_headers["distinct"] == without["distinct"] == 12
    assert with_headers["headers_read"] and not without["headers_read"] and without["width"] is None
    assert result["images"]["images"] == 12 and result["images"]["seconds_with"] > 0


def test_the_benchmark_fails_when_a_card_disagrees_with_its_file(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from inspect_throughput import check_card
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    card = {"path": "mix.json", "composition": {"records": 3, "with_image": 2, "sources": {"coco": 2, "sharegpt": 1}},
            "diversity": {"questions": 5, "exact_duplicate_records": 0}, "problems": {"rejected": 0}}
    expected = {"records": 3, "with_image": 2, "questions": 5, "sources": {"coco": 2, "sharegpt": 1}}
    check_card(card, expected)
    with pytest.raises(SystemExit, match="questions: card 5, file 6"):
        check_card(card, expected | {"questions": 6})
    card["problems"]["rejected"] = 1
    with pytest.raises(SystemExit, match="rejected: 1"):
        check_card(card, expected)
