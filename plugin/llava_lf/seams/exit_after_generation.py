"""An exit handler that waits for the host's generation threads, so a chat that ends right after an answer does not
abort in torch's C++ runtime (exit status 134; docs/design.md). Other processes have no such thread and exit as before.

The threads are found by name: the host starts them with `Thread(target=model.generate)`, and Python names such a
thread "Thread-N (generate)"; `SEAM` checks both.
"""

from __future__ import annotations

import atexit
import threading
import time

from . import Seam, calls_by_name

WAIT_S = 5.0  # an answer cut off by Ctrl-C keeps generating; do not hold the exit for all of it
SUFFIX = "(generate)"
ENGINE_MODULE = "llamafactory.chat.hf_engine"
_installed = False


def _checks() -> list[str]:
    import importlib

    def generate() -> None:  # named as the host's target is
        pass

    misfits = [] if threading.Thread(target=generate).name.endswith(SUFFIX) else [
        f"Python no longer names a thread after its target ({threading.Thread(target=generate).name!r})"]
    stream_chat = importlib.import_module(ENGINE_MODULE).HuggingfaceEngine._stream_chat
    return misfits + calls_by_name(stream_chat, "Thread") + calls_by_name(stream_chat, "generate")


SEAM = Seam(feature="chat exits after the answer's thread", symbol=f"{ENGINE_MODULE}.HuggingfaceEngine._stream_chat",
            module=ENGINE_MODULE, checks=_checks,
            ours=f"seams/exit_after_generation.py: generation_threads (daemon threads named '... {SUFFIX}')")


def generation_threads() -> list[threading.Thread]:
    """Live daemon threads started with a `generate` target (Python names them "Thread-N (generate)")."""
    return [thread for thread in threading.enumerate()
            if thread.daemon and thread.is_alive() and thread.name.endswith(SUFFIX)]


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
