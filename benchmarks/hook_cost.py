"""Benchmark: what the `.pth` hook adds to every interpreter start, next to an eager host import.

Run: .venv/bin/python benchmarks/hook_cost.py
Prints the hook's import cost (from `python -X importtime`, median of N starts), the wall time of a bare
interpreter start with and without the hook, and the cost of an eager `import llamafactory` for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

RUNS = 15  # interpreter starts per figure; the median counts


def hook_import_us() -> int:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
    rows = [line.split("|") for line in out.splitlines() if "llava_lf" in line]
    return sum(int(row[0].split(":")[1]) for row in rows)  # self time of each llava_lf module


def start_seconds(disabled: bool, code: str = "pass") -> float:
    env = {**os.environ, **({"LLAVA_LF_DISABLE_HOOK": "1"} if disabled else {})}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="interpreter starts per figure (the median counts)")
    runs = parser.parse_args(argv).runs
    imports = [hook_import_us() for _ in range(runs)]
    if not all(imports):  # no llava_lf module in -X importtime: the hook did not run, and 0 ms would be a lie
        raise SystemExit("the .pth hook imported no llava_lf module; is the project installed in this interpreter?")
    hook_ms = statistics.median(imports) / 1000
    with_hook = statistics.median(start_seconds(False) for _ in range(runs)) * 1000
    without = statistics.median(start_seconds(True) for _ in range(runs)) * 1000
    eager = start_seconds(True, "import llamafactory.data.template") * 1000
    print(f"hook modules' import time (median of {runs}): {hook_ms:.1f} ms   (budget 50 ms)")
    print(f"interpreter start: {with_hook:.1f} ms with hook, {without:.1f} ms without "
          f"(+{with_hook - without:.1f} ms, {with_hook / without:.2f}x)")
    print(f"for scale, an eager `import llamafactory.data.template`: {eager:.0f} ms "
          f"({eager / max(hook_ms, 0.001):.0f}x the hook)")


if __name__ == "__main__":
    main()
