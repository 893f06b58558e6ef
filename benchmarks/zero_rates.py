"""Check, from lora_speed.json, that DeepSpeed runs trained the projector and the LoRA each at its own rate.

Each run's `plugin_report` is our callback's `llava_lf_training.json`: the optimizer's groups as DeepSpeed
holds them, with their peak rates. Writes OUT/zero_rates.json; exit 1 when a run is missing or wrong.

    python benchmarks/zero_rates.py runs/bench/zero/lora_speed.json z2 z3 --lr 2e-4 --projector-lr 2e-5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def check_run(run: dict | None, lr: float, projector_lr: float) -> list[str]:
    """Problems with one run's record; empty when it finished with exactly the two expected rates."""
    if run is None:
        return ["did not run"]
    report = run.get("plugin_report")
    if not report:
        return ["no llava_lf_training.json (the run failed before training began)"]
    rates = sorted({group["initial_lr"] for group in report["param_groups"]})
    problems = []
    if len(rates) != 2 or not all(math.isclose(a, b) for a, b in zip(rates, sorted([projector_lr, lr]))):
        problems.append(f"group rates {rates}, expected {sorted([projector_lr, lr])}")
    if not run.get("measured_steps"):
        problems.append("no training step finished")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--projector-lr", type=float, default=2e-5)
    args = parser.parse_args(argv)
    runs = json.loads(args.result.read_text())["runs"] if args.result.is_file() else {}
    verdict = {name: check_run(runs.get(name), args.lr, args.projector_lr) for name in args.runs}
    (args.result.parent / "zero_rates.json").write_text(json.dumps(verdict, indent=2))
    for name, problems in verdict.items():
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
    return 1 if any(verdict.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
