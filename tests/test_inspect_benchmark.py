"""The inspect benchmark script runs end to end on a tiny input, so it cannot rot; its cards must agree with
the files (the script fails when they do not) and its figures with each other."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


def test_inspect_benchmark_runs_on_a_tiny_input(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/inspect_throughput.py"), "--sizes", "300",
                           "--images", "12", "--keep", str(tmp_path / "work"), "--json", str(figures)],
                          timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(figures.read_text())
    [row] = result["records"]
    assert row["records"] == 300
    assert row["records_per_s"] == pytest.approx(row["records"] / row["seconds"])
    assert row["records_per_cpu_s"] == pytest.approx(row["records"] / row["cpu_s"])
    assert f"{row['records']:>9,} {row['file_mb']:>8.0f}" in done.stdout  # the printed row is this row
    images = result["images"]
    assert images["images"] == 12 and images["seconds_with"] > 0 and images["seconds_without"] > 0


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
