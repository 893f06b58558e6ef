"""One measured training: `python -m speed.runner RECORD.json CONFIG.yaml [key=value ...]`.

This is what `llamafactory-cli train CONFIG.yaml key=value ...` does on one device (the host's launcher
removes `train` and calls `run_exp()`, which reads the YAML and the overrides from sys.argv), plus the
measuring callback. Our templates reach this process by the same `.pth` hook as every host process.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not argv[1].endswith((".yaml", ".yml")):
        print("usage: python -m speed.runner RECORD.json CONFIG.yaml [key=value ...]", file=sys.stderr)
        return 2
    record_path, config, *overrides = argv
    sys.argv = ["llamafactory-cli", config, *overrides]

    from llamafactory.train.tuner import run_exp

    from .probe import StepProbe

    probe = StepProbe()
    run_exp(callbacks=[probe])
    probe.record.write(Path(record_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
