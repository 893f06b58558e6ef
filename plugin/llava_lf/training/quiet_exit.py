"""An exit handler for distributed training workers: the interpreter shuts down only once the process's other
threads are asleep, so a collective's worker thread that still holds the last reference to a Python tensor drops it
while Python is alive (docs/design.md, "Training workers exit after their collective threads").

The threads are torch's (gloo's workers and loop); nothing of the host or of torch is read or patched: the handler
looks at the process's threads in /proc and sleeps with the GIL released. Processes that are not distributed workers
(no WORLD_SIZE above 1) exit as before.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path

WAIT_S = 5.0  # a thread busy for longer is not finishing a collective; do not hold the exit for it
LOOK_S = 0.01  # between looks; each look sleeps, so a thread waiting for the GIL gets it
QUIET_LOOKS = 2  # consecutive looks with every other thread asleep
ASLEEP = frozenset("SIT")  # /proc states: sleeping, idle kernel thread, stopped
TASKS = Path("/proc/self/task")
_installed = False


def busy_threads() -> list[str]:
    """The other threads of this process that are running or runnable, as "name (tid)"; empty without /proc."""
    own = threading.get_native_id()
    busy = []
    for task in TASKS.glob("*") if TASKS.is_dir() else ():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended between the listing and the read
            continue
        name_end = stat.rindex(")")  # the name may hold spaces and parentheses; the state follows its last ")"
        state, name = stat[name_end + 2], stat[stat.index("(") + 1:name_end]
        if int(task.name) != own and state not in ASLEEP:
            busy.append(f"{name} ({task.name})")
    return busy


def wait_for_quiet_threads(timeout: float | None = None) -> bool:
    """Sleep until every other thread has been asleep for QUIET_LOOKS looks in a row, or `timeout` (WAIT_S) passed;
    True if they went quiet."""
    deadline = time.monotonic() + (WAIT_S if timeout is None else timeout)
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(LOOK_S)  # releases the GIL: a thread that needs it to drop a Python object takes it now
        quiet = quiet + 1 if not busy_threads() else 0
        if quiet >= QUIET_LOOKS:
            return True
    return False


def is_distributed_worker() -> bool:
    """Started by torchrun (or DeepSpeed's launcher) as one of several processes."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _at_exit() -> None:
    if is_distributed_worker():
        wait_for_quiet_threads()


def install() -> None:
    """Register the exit handler once per process (it decides at exit whether the process was a worker)."""
    global _installed
    if not _installed:
        atexit.register(_at_exit)
        _installed = True
