"""The real `llamafactory-cli` as a user runs it from an activated venv, for every test that trains, exports or
serves through it: one runner, so each run gets the same PATH (the host launches `torchrun` from it), its own
process group (a run that hangs is killed whole, workers included) and one log of stdout and stderr together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def cli(command: str, config: Path, overrides: dict | None, log: Path, wait: bool = True, env: dict | None = None,
        timeout: float = 600) -> subprocess.Popen:
    """`llamafactory-cli COMMAND CONFIG key=value ...` in its own process group, output to `log`; with `wait`, it
    must exit 0 within `timeout` seconds (else the group is killed and the log's tail is the failure message).

    It runs in the log's folder: the web UI writes a `llamaboard_cache/` into its working directory.
    """
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    args = [str(BIN / "llamafactory-cli"), command, str(config)] + [f"{k}={v}" for k, v in (overrides or {}).items()]
    with open(log, "w") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   cwd=log.parent)
    if wait:
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError(f"{' '.join(args)} ran past {timeout} s:\n{log.read_text()[-4000:]}") from None
        assert code == 0, f"{' '.join(args)} exited {code}:\n{log.read_text()[-4000:]}"
    return process
