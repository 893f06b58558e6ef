"""End to end: `llamafactory-cli api` serves the tiny demo model as the teacher; the generator runs against it.

The tiny model writes nonsense. What is checked is that the pipeline talks to the host's real
OpenAI-compatible server, accounts for every request (written or rejected with a reason, none failed),
totals the host's token usage, and that whatever it wrote converts. (With 24 new tokens, every reply
of the untrained model comes back truncated and is rejected as such.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest
from conftest import BIN, free_port

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]


def _wait_until_serving(process: subprocess.Popen, url: str, key: str, log, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {key}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"llamafactory-cli api exited with {process.returncode}:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"llamafactory-cli api did not answer on {url} within {limit_s} s")


@pytest.mark.timeout(300)
def test_generate_against_llamafactory_api(tmp_path, tiny_llava, demo_data, monkeypatch):
    from llava_lf.data.convert import convert_file
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation
    from llava_lf.data.generate.tasks import TASK_TYPES

    data, _ = demo_data
    config = tmp_path / "api.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_llava), "template": "llava_v1",
                                      "infer_backend": "huggingface"}))
    port, key = free_port(), "host-key-123"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "API_HOST": "127.0.0.1",
           "API_PORT": str(port), "API_VERBOSE": "0", "API_KEY": key}
    monkeypatch.setenv("HOST_TEACHER_KEY", key)  # the server checks it: a missing header would be a 401
    url = f"http://127.0.0.1:{port}/v1"
    with open(tmp_path / "api.log", "w+", encoding="utf-8") as log:
        server = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", str(config)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(server, url, key, log)
            teacher = TeacherConfig(base_url=url, model="tiny", api_key_env="HOST_TEACHER_KEY", timeout_s=120,
                                    max_retries=1, backoff_s=0.1, max_tokens=24)
            out = tmp_path / "gen.jsonl"
            report = run_generation(GenerateJob(
                data.root / "captions_train.json", data.root / "instances_train.json", list(TASK_TYPES), out,
                teacher, limit=2, concurrency=2, shots=1, progress=False))
        finally:
            server.terminate()
            server.wait(timeout=30)

    summary = report.summary()
    assert report.failures == [] and report.aborted is None, summary
    assert report.pairs == 6 and sum(report.written.values()) + sum(report.rejected.values()) == 6, summary
    assert report.requests == 6 and not report.retries, summary
    assert report.prompt_tokens > 6 * 100 and 0 < report.completion_tokens <= 6 * 24, summary
    rejected = [json.loads(line) for line in (tmp_path / "gen.rejected.jsonl").read_text().splitlines()]
    assert all(row["reason"] and row["detail"] for row in rejected)
    assert sum(report.rejected.values()) == len(rejected)
    saved = json.loads((tmp_path / "gen.report.json").read_text())
    assert saved["completion_tokens"] == report.completion_tokens
    if report.written:  # an untrained model rarely manages a usable reply; when it does, the record converts
        conversion = convert_file(out, data.image_dir, tmp_path / "datasets", "generated")
        assert conversion.written == sum(report.written.values())
