"""A chat process exits after the host's generation thread, not while it is still in torch.

The host's chat streams from `model.generate` running in a daemon thread; exiting while that thread is in
torch aborts the process (SIGABRT, "terminate called without an active exception"). The script below
stands in for that moment with a real torch loop in a thread started with a `generate` target, exactly as
the host's engine starts it, and exits while it runs.
"""

import signal
import subprocess
import sys
import threading
import time

from llava_lf.host import exit_after_generation

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


def _run(tmp_path, env_extra):
    marker = tmp_path / f"finished-{len(env_extra)}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], capture_output=True, text=True,
                          timeout=300, env={**_env(), **env_extra})
    return done, marker.exists()


def _env():
    import os

    return {key: value for key, value in os.environ.items() if key != "LLAVA_LF_DISABLE_HOOK"}


def test_exit_waits_for_the_generation_thread(tmp_path):
    done, finished = _run(tmp_path, {})
    assert done.returncode == 0, done.stderr[-2000:]
    assert finished  # the thread ran to its end before the interpreter shut down
    assert "terminate called" not in done.stderr


def test_without_the_plugin_the_same_exit_aborts(tmp_path):
    # The host's own behaviour, which the exit handler exists for: if torch stops aborting here, the
    # handler can go.
    done, finished = _run(tmp_path, {"LLAVA_LF_DISABLE_HOOK": "1"})
    assert done.returncode == -signal.SIGABRT, (done.returncode, done.stderr[-2000:])
    assert not finished


def test_an_answer_that_goes_on_holds_the_exit_for_at_most_the_wait():
    stop = threading.Event()

    def generate():
        stop.wait(60)

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    other = threading.Thread(target=stop.wait, args=(60,), daemon=True)  # not a generation: not waited for
    other.start()
    try:
        assert exit_after_generation.generation_threads() == [thread]
        started = time.monotonic()
        exit_after_generation.wait_for_generation(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 5
        assert thread.is_alive()
    finally:
        stop.set()
    thread.join(5)
    assert exit_after_generation.generation_threads() == []
