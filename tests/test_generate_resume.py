"""Kill `llava-lf generate` with SIGKILL mid-run, restart it: every pair ends up done once, none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from conftest import BIN
from test_generate_teacher import Reply, ScriptedTeacher

from llava_lf.data.generate.coco import load_contexts
from llava_lf.data.generate.tasks import TASK_TYPES


def _ids(path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.exists() else []


def _line_count(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.timeout(90)
def test_sigkill_then_restart_loses_nothing_and_duplicates_nothing(tmp_path):
    from llava_lf.demo.dataset import write_demo_data

    data = write_demo_data(tmp_path / "coco", n_train=24, n_test=1, image_size=48, seed=0)
    captions, instances = data.root / "captions_train.json", data.root / "instances_train.json"
    contexts, _ = load_contexts(captions, instances)
    every = {f"{context.image_id}-{task}" for context in contexts for task in TASK_TYPES}
    # Every fifth image's conversation is malformed, so both output files are live when the kill lands.
    script = {(context.image_id, "conversation"): [Reply(text="no idea", delay_s=0.05)]
              for context in contexts[::5]}
    slow = {(context.image_id, task): [Reply(delay_s=0.05)] for context in contexts for task in TASK_TYPES}
    out = tmp_path / "gen.jsonl"
    rejected = tmp_path / "gen.rejected.jsonl"
    command = [str(BIN / "llava-lf"), "generate", "--captions", str(captions), "--instances", str(instances),
               "--teacher-model", "scripted", "--out", str(out), "--concurrency", "4", "--no-progress"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    with ScriptedTeacher(contexts, {**slow, **script}) as teacher:
        process = subprocess.Popen(command + ["--teacher-base-url", teacher.url], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while _line_count(out) + _line_count(rejected) < 20 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        first_run = len(teacher.seen)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = set(_ids(out)) | set(_ids(rejected))
    assert 20 <= len(done_before) < len(every)
    with open(out, "ab") as handle:  # what a kill inside a write leaves behind
        handle.write(b'{"id": "' + min(every - done_before).encode() + b'", "image": "tor')

    with ScriptedTeacher(contexts, script) as teacher:
        result = subprocess.run(command + ["--teacher-base-url", teacher.url], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        asked_again = Counter(f"{seen.image_id}-{seen.task}" for seen in teacher.seen)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dropped 1 torn row(s)" in result.stdout
    assert f"{len(done_before)} already done" in result.stdout

    written, refused = _ids(out), _ids(rejected)
    assert len(written) == len(set(written)) and len(refused) == len(set(refused))  # no duplicate
    assert set(written) | set(refused) == every and not set(written) & set(refused)  # no loss
    assert set(refused) == {f"{context.image_id}-conversation" for context in contexts[::5]}
    assert set(asked_again) == every - done_before and max(asked_again.values()) == 1  # finished pairs skipped
    assert first_run + sum(asked_again.values()) >= len(every)
    for line in out.read_text().splitlines():
        json.loads(line)  # the torn row is gone, not glued to the next record
