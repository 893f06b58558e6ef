"""Kill `llava-lf generate` with SIGKILL at random points, restart it: every pair ends up done once, none twice.

The kill points are drawn from a seed printed on failure (set KILL_SEED to replay one); KILL_ROUNDS sets
how many kills one test run lands (default 3; the longer run in docs/generate.md uses more).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter

import pytest
from conftest import BIN
from helpers.fake_openai import Reply, ScriptedTeacher

from llava_lf.data.generate.coco import load_contexts
from llava_lf.data.generate.tasks import TASK_TYPES

ROUNDS = int(os.environ.get("KILL_ROUNDS", "3"))
OUTPUTS = {"gen.jsonl", "gen.rejected.jsonl", "gen.report.json", "gen.jsonl.lock", "gen.rejected.jsonl.lock"}


def _ids(path) -> list[str]:
    """Ids of the rows the appender would keep on reopen: complete lines, and a last line that parses."""
    if not path.exists():
        return []
    ids = []
    lines = path.read_bytes().split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ids.append(json.loads(line)["id"])
        except ValueError:
            assert index == len(lines) - 1, f"{path}: line {index + 1} is torn but not the last"
    return ids


def _line_count(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.timeout(90 + 50 * ROUNDS)  # each start imports torch through the host: seconds under load
def test_sigkill_at_random_points_then_restart_loses_nothing_and_duplicates_nothing(tmp_path):
    from llava_lf.demo.dataset import write_demo_data

    seed = int(os.environ.get("KILL_SEED", str(time.time_ns() % 100_000)))
    rounds = ROUNDS
    rng = random.Random(seed)
    data = write_demo_data(tmp_path / "coco", n_train=24, n_test=1, image_size=48, seed=0)
    captions, instances = data.root / "captions_train.json", data.root / "instances_train.json"
    contexts, _ = load_contexts(captions, instances)
    every = {f"{context.image_id}-{task}" for context in contexts for task in TASK_TYPES}
    # Every fifth image's conversation is malformed, so both output files are live when a kill lands.
    script = {(context.image_id, "conversation"): [Reply(text="no idea", delay_s=0.05)]
              for context in contexts[::5]}
    slow = {(context.image_id, task): [Reply(delay_s=0.05)] for context in contexts for task in TASK_TYPES}
    work = tmp_path / "work"
    out, rejected = work / "gen.jsonl", work / "gen.rejected.jsonl"
    command = [str(BIN / "llava-lf"), "generate", "--captions", str(captions), "--instances", str(instances),
               "--teacher-model", "scripted", "--out", str(out), "--concurrency", "4", "--no-progress"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    kills, asked = 0, Counter()
    with ScriptedTeacher(contexts, {**slow, **script}) as teacher:
        for _ in range(rounds):
            done = _line_count(out) + _line_count(rejected)
            target = done + rng.randint(1, max(1, (len(every) - done) // rounds))
            process = subprocess.Popen(command + ["--teacher-base-url", teacher.url], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while (_line_count(out) + _line_count(rejected) < target and process.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.04))  # between appends, or inside one
            process.send_signal(signal.SIGKILL)
            process.wait()
            if process.returncode != -signal.SIGKILL:
                break  # it finished first: nothing left to kill
            kills += 1
            written, refused = _ids(out), _ids(rejected)
            assert len(written + refused) == len(set(written + refused)), f"seed {seed}: a duplicate after a kill"
        asked.update(teacher.pairs())
    assert kills >= 1, f"seed {seed}: every run finished before it could be killed"
    done_before = set(_ids(out)) | set(_ids(rejected))
    assert len(done_before) < len(every), f"seed {seed}"
    with open(out, "ab") as handle:  # what a kill inside a write leaves behind, for certain
        handle.write(b'{"id": "' + min(every - done_before).encode() + b'", "image": "tor')

    with ScriptedTeacher(contexts, script) as teacher:
        result = subprocess.run(command + ["--teacher-base-url", teacher.url], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        asked_again = Counter(teacher.pairs())
    assert result.returncode == 0, f"seed {seed}: " + result.stdout + result.stderr
    assert re.search(r"dropped [12] torn row\(s\)", result.stdout), result.stdout
    assert f"{len(done_before)} already done" in result.stdout

    written, refused = _ids(out), _ids(rejected)
    assert len(written) == len(set(written)) and len(refused) == len(set(refused)), f"seed {seed}: duplicate"
    assert set(written) | set(refused) == every and not set(written) & set(refused), f"seed {seed}: loss"
    assert set(refused) == {f"{context.image_id}-conversation" for context in contexts[::5]}
    assert set(asked_again) == every - done_before and max(asked_again.values()) == 1  # finished pairs skipped
    assert sum(asked.values()) + sum(asked_again.values()) >= len(every)
    for line in out.read_text().splitlines():
        json.loads(line)  # the torn rows are gone, not glued to the next record
    leftovers = {path.name for path in work.iterdir()} - OUTPUTS
    assert not leftovers, f"seed {seed}: left behind {sorted(leftovers)}"
