"""Loopback ports for the servers tests start (llamafactory-cli api/webchat, fake OpenAI servers), and stopping
them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port nobody listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(process: subprocess.Popen, port: int, log: Path, seconds: float) -> None:
    """Return once `process` listens on `port`; fail with its log's tail if it exits or takes too long."""
    name = " ".join([Path(str(process.args[0])).name, str(process.args[1])])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise AssertionError(f"{name} did not listen on {port} in {seconds} s:\n{log.read_text()[-4000:]}")


def stop_group(process: subprocess.Popen) -> None:
    """End a process started with `start_new_session=True` and all it started: SIGTERM to its group, SIGKILL after
    30 s; nothing when it has already exited."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
