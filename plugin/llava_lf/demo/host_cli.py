"""Run the real `llamafactory-cli` as a subprocess, with a log file and a compact progress echo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from llava_lf.errors import LlavaLfError

TRAINER_LOG = "trainer_log.jsonl"  # the host's own per-log-step record (llamafactory.extras.constants.TRAINER_LOG)


def host_cli() -> str:
    """The `llamafactory-cli` of this interpreter's environment (never another one on PATH)."""
    beside = Path(sys.executable).with_name("llamafactory-cli")
    found = str(beside) if beside.exists() else shutil.which("llamafactory-cli")
    if not found:
        raise LlavaLfError("llamafactory-cli not found; install the project with `make install`")
    return found


class TrainerLogTail:
    """New rows of the host's `trainer_log.jsonl` since the last look (the file is rewritten when a run starts over)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.pending = path, 0, b""

    def new_rows(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() < self.offset:  # truncated or replaced: read it again from the start
                    self.offset, self.pending = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:  # a line the host is still writing cannot be complete here; skip anything else odd
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows


def _echo_rows(tail: TrainerLogTail) -> None:
    for row in tail.new_rows():
        if "loss" in row:
            print(f"      step {row.get('current_steps', '?')}/{row.get('total_steps', '?')}  "
                  f"epoch {float(row.get('epoch', 0)):5.2f}  loss {float(row['loss']):.4f}", flush=True)


def run_host(command: str, config: Path, overrides: dict[str, object], log: Path, echo: bool = True) -> None:
    """`llamafactory-cli COMMAND CONFIG key=value ...`; raises with the log's tail on failure.

    Training progress is echoed from the host's `trainer_log.jsonl` in `output_dir`, not parsed from its stdout.
    """
    output_dir = overrides.get("output_dir")
    tail = TrainerLogTail(Path(str(output_dir)) / TRAINER_LOG) if echo and output_dir else None
    args = [host_cli(), command, str(config)] + [f"{key}={value}" for key, value in overrides.items()]
    log.parent.mkdir(parents=True, exist_ok=True)
    path = f"{Path(args[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the host launches torchrun from PATH
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(args) + "\n")
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in process.stdout or ():
            handle.write(line)
            if tail is not None:
                _echo_rows(tail)
        code = process.wait()
    if tail is not None:
        _echo_rows(tail)
    if code != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-25:])
        raise LlavaLfError(f"llamafactory-cli {command} {config} failed (exit {code}); log: {log}\n{tail}")
