"""A chat process exits after the host's generation thread, not while it is still in torch.

The host's chat streams from `model.generate` running in a daemon thread; exiting while that thread is in
torch aborts the process (SIGABRT, "terminate called without an active exception"). The script below
stands in for that moment with a real torch loop in a thread started with a `generate` target, exactly as
the host's engine starts it, and exits while it runs.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from llava_lf.seams import exit_after_generation

pytestmark = pytest.mark.host

SCRIPT = """
import sys, threading, time
import torch
import llamafactory.data.template  # the .pth hook registers the plugin right after this import

x = torch.randn(256, 256)

def generate():
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        x @ x
    open(sys.argv[1], "w").write("finished")

threading.Thread(target=generate, daemon=True).start()
time.sleep(0.2)  # the answer has streamed; the user types exit
"""


def _run(marker, **env_overrides):
    """Run SCRIPT in a fresh interpreter (the hook on unless overridden); did its thread finish?"""
    env = {key: value for key, value in os.environ.items() if key != "LLAVA_LF_DISABLE_HOOK"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], capture_output=True, text=True,
                          timeout=300, env={**env, **env_overrides})
    return done, marker.exists()


@pytest.mark.slow  # a fresh interpreter that loads torch and the host: 5-10 s
def test_exit_waits_for_the_generation_thread(tmp_path):
    done, finished = _run(tmp_path / "finished")
    assert done.returncode == 0, done.stderr[-2000:]
    assert finished  # the thread ran to its end before the interpreter shut down
    assert "terminate called" not in done.stderr


@pytest.mark.slow
def test_without_the_plugin_the_same_exit_aborts(tmp_path):
    # The host's own behaviour, which the exit handler exists for: if torch stops aborting here, the
    # handler can go.
    done, finished = _run(tmp_path / "finished", LLAVA_LF_DISABLE_HOOK="1")
    assert done.returncode == -signal.SIGABRT, (done.returncode, done.stderr[-2000:])
    assert not finished


def test_answers_that_go_on_hold_the_exit_for_at_most_the_wait_together():
    stop = threading.Event()

    def generate():
        stop.wait(60)

    threads = [threading.Thread(target=generate, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    other = threading.Thread(target=stop.wait, args=(60,), daemon=True)  # not a generation: not waited for
    other.start()
    try:
        assert exit_after_generation.generation_threads() == threads
        started = time.monotonic()
        exit_after_generation.wait_for_generation(timeout=1.0)
        assert 0.95 < time.monotonic() - started < 1.9  # one wait for both, not one each
        assert all(thread.is_alive() for thread in threads)
    finally:
        stop.set()
    for thread in threads:
        thread.join(5)
    assert exit_after_generation.generation_threads() == []

