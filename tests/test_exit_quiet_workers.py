"""The exit handler of distributed training workers waits, with the GIL released, until the process's other threads
are asleep, so a gloo worker thread that still holds the last reference to a collective's tensors drops it while
Python is alive (docs/design.md).

The two-process test replays the end of a run on rank 1, as transformers ends it (an all_gather of the step's
scalars, whose tensors Python lets go of first), with gloo's worker threads allowed to run only while the main
thread sleeps (SCHED_IDLE on its CPU): the release then always lands at exit, where a loaded machine lands it
sometimes. Without the handler rank 1 aborts ("terminate called without an active exception", SIGABRT); with it,
both ranks exit 0.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import pytest
from conftest import BIN

from llava_lf.training import quiet_exit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the handler reads /proc")

# Rank 1's last collective as transformers' distributed_broadcast_scalars makes it; then an exit callback that holds
# the GIL in C (registered first, so it runs last, right before the interpreter starts finalizing): the delayed
# release starts waiting for the GIL there, and meets the finalization.
LATE_RELEASE = """
import atexit, ctypes, os, sys
import torch, torch.distributed as dist

class HoldAtFinalization:
    # Cleared with __main__ once the interpreter is finalizing: its pause gives a thread waiting for the GIL the
    # CPU it needs to notice that (an idle-priority thread gets none while the main thread runs).
    def __init__(self):
        self.hold = ctypes.PyDLL(None).usleep  # PyDLL: called with the GIL held
    def __del__(self):
        self.hold(500_000)

rank = int(os.environ["RANK"])
if rank == 1:
    held = HoldAtFinalization()
    atexit.register(held.hold, 1_500_000)
if sys.argv[1] == "handler":  # both ranks, as in a run: rank 0 ends right after the same collective here
    from llava_lf.training import quiet_exit
    quiet_exit.WAIT_S = 120.0  # a loaded test machine may keep an idle-priority thread waiting
    quiet_exit.install()
dist.init_process_group("gloo")
if rank == 1:
    import time
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    # A gloo thread names itself once it starts running: on a loaded machine that can be after init returns, so
    # wait for the name rather than miss the thread (which would let the release land early, unseen).
    deadline, runloops = time.monotonic() + 60, []
    while not runloops and time.monotonic() < deadline:
        runloops = [tid for tid in os.listdir("/proc/self/task")
                    if open(f"/proc/self/task/{tid}/comm").read().strip() == "pt_gloo_runloop"]
        time.sleep(0.01)
    if not runloops:
        sys.exit("no pt_gloo_runloop thread appeared within 60 s")
    for tid in runloops:
        os.sched_setaffinity(int(tid), {cpu})
        os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))

def scalars():
    scalar = torch.ones(1)
    gathered = [scalar.clone() for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, scalar)
    return torch.cat(gathered)

for _ in range(3):
    scalars()
print(f"rank {rank} done", flush=True)
"""


def _two_processes(tmp_path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "late_release.py"
    script.write_text(LATE_RELEASE)
    env = {key: value for key, value in os.environ.items() if key != "LLAVA_LF_DISABLE_HOOK"}
    return subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", str(script), mode], capture_output=True,
                          text=True, timeout=600, env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)


@pytest.mark.slow  # two torchrun launches of two processes each: 20-60 s on 2 CPUs
def test_a_worker_exits_cleanly_when_gloo_lets_go_of_its_tensors_late(tmp_path):
    for _attempt in range(3):  # the replay aborts every time on an idle machine; a busy one may still move it
        without = _two_processes(tmp_path, "bare")
        if "terminate called without an active exception" in without.stderr:
            break
    assert without.returncode != 0 and "terminate called without an active exception" in without.stderr, (
        "torch no longer aborts here in 3 tries; the exit handler may be unnecessary:\n" + without.stderr[-2000:])
    with_handler = _two_processes(tmp_path, "handler")
    assert with_handler.returncode == 0, with_handler.stderr[-3000:]
    assert "rank 0 done" in with_handler.stdout and "rank 1 done" in with_handler.stdout
    assert "terminate called" not in with_handler.stderr


BUFFER = b"\0" * (96 << 20)  # long enough to be running when the handler first looks, even on a fast machine


def _busy_thread() -> tuple[threading.Thread, list[str]]:
    digests: list[str] = []
    thread = threading.Thread(target=lambda: digests.append(hashlib.sha256(BUFFER).hexdigest()), daemon=True)
    thread.start()
    return thread, digests


@pytest.mark.slow  # hashes ~100 MB a few times: seconds on a loaded machine
def test_the_handler_waits_for_a_busy_native_thread():
    thread, digests = _busy_thread()
    assert any(f"({thread.native_id})" in busy for busy in quiet_exit.busy_threads())  # seen while it runs
    assert quiet_exit.wait_for_quiet_threads(timeout=120.0)
    assert digests == [hashlib.sha256(BUFFER).hexdigest()]  # it finished before the handler let the exit go on
    assert quiet_exit.busy_threads() == []


def test_the_handler_gives_up_on_a_thread_that_stays_busy():
    thread, digests = _busy_thread()
    assert not quiet_exit.wait_for_quiet_threads(timeout=0.0)  # a deadline passed: the exit is not held
    thread.join()


@pytest.mark.parametrize(("world_size", "worker"), [(None, False), ("1", False), ("2", True), ("two", False)])
def test_only_workers_of_a_multi_process_run_wait(monkeypatch, world_size, worker):
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    assert quiet_exit.is_distributed_worker() is worker
    assert os.environ.get("WORLD_SIZE") == world_size


@pytest.mark.host  # imports transformers' integration registry
def test_registration_installs_the_handler():
    from llava_lf.training import register_training_callback

    register_training_callback()  # what register_all runs in every process that loads our templates
    assert quiet_exit._installed
