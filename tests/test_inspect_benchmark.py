"""The inspect benchmark script runs end to end on a tiny input, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_inspect_benchmark_runs_on_a_tiny_input(tmp_path):
    figures = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks/inspect_throughput.py"), "--sizes", "300", "--images", "12",
                    "--keep", str(tmp_path / "work"), "--json", str(figures)], check=True, timeout=600,
                   capture_output=True, text=True)
    result = json.loads(figures.read_text())
    [row] = result["records"]
    assert row["records"] == 300 and row["peak_rss_mb"] > 0 and row["records_per_s"] > 0
    assert result["images"]["images"] == 12
