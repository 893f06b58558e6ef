"""Run the real `llamafactory-cli` as a subprocess, with a log file and a compact progress echo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from llava_lf.errors import LlavaLfError

_LOSS = re.compile(r"\{'loss': '([0-9.e+-]+)'.*'epoch': '([0-9.e+-]+)'")


class HostCommandError(LlavaLfError):
    pass


def host_cli() -> str:
    """The `llamafactory-cli` of this interpreter's environment (never another one on PATH)."""
    beside = Path(sys.executable).with_name("llamafactory-cli")
    found = str(beside) if beside.exists() else shutil.which("llamafactory-cli")
    if not found:
        raise HostCommandError("llamafactory-cli not found; install the project with `make install`")
    return found


def run_host(command: str, config: Path, overrides: dict[str, object], log: Path, echo: bool = True) -> None:
    """`llamafactory-cli COMMAND CONFIG key=value ...`; raises with the log's tail on failure."""
    args = [host_cli(), command, str(config)] + [f"{key}={value}" for key, value in overrides.items()]
    log.parent.mkdir(parents=True, exist_ok=True)
    path = f"{Path(args[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the host launches torchrun from PATH
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(args) + "\n")
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in process.stdout or ():
            handle.write(line)
            match = _LOSS.search(line)
            if echo and match:
                print(f"      epoch {float(match.group(2)):5.2f}  loss {float(match.group(1)):.4f}", flush=True)
        code = process.wait()
    if code != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-25:])
        raise HostCommandError(f"llamafactory-cli {command} {config} failed (exit {code}); log: {log}\n{tail}")
