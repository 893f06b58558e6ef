"""Let a chat process exit only after the host's generation thread has finished.

The host streams an answer by running `model.generate` in a daemon thread and reading its
`TextIteratorStreamer`; the streamer ends inside `generate`, a moment before the thread does. When the
user types `exit` right after an answer (or a piped session ends), the interpreter can shut down while
that thread is still in torch, and torch's C++ runtime aborts the process ("terminate called without an
active exception", exit status 134), which measured 5 times in 45 piped `llamafactory-cli chat` sessions
on a loaded 2-CPU machine. An exit handler that waits for the generation threads (a few milliseconds
normally, at most WAIT_S after an interrupt mid-answer) closes that window without touching a host function.

Installed by `registration.register_all`, so in every process that loads the host's templates; it only
waits for live threads that run a `generate`, so training and other processes exit as before.
"""

from __future__ import annotations

import atexit
import threading
import time

WAIT_S = 5.0  # an answer cut off by Ctrl-C keeps generating; do not hold the exit for all of it
_installed = False


def generation_threads() -> list[threading.Thread]:
    """Live daemon threads started with a `generate` target (Python names them "Thread-N (generate)")."""
    return [thread for thread in threading.enumerate()
            if thread.daemon and thread.is_alive() and thread.name.endswith("(generate)")]


def wait_for_generation(timeout: float = WAIT_S) -> None:
    """Join every generation thread, all of them within `timeout` (the API server may run several)."""
    deadline = time.monotonic() + timeout
    for thread in generation_threads():
        thread.join(max(0.0, deadline - time.monotonic()))


def install() -> None:
    """Register the exit handler once per process."""
    global _installed
    if not _installed:
        atexit.register(wait_for_generation)
        _installed = True
