"""An exit handler that waits for the host's generation threads, so a chat that ends right after an answer does not
abort in torch's C++ runtime (exit status 134; docs/design.md). Other processes have no such thread and exit as before.
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
