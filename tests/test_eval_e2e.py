"""LLaVA-Bench end to end: the tiny model answers (`predict`), and `llamafactory-cli api` serving the same
tiny model is the judge (`score`). Its replies are poor, so most are asked again and counted unparsable;
what matters is that every reply is accounted for and a second scoring run is served from the cache."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import BIN, free_port, wait_for_port
from test_eval_data import run_cli, write_llava_bench

import yaml

pytestmark = [pytest.mark.slow, pytest.mark.host]


@pytest.mark.timeout(360)
def test_llava_bench_judged_by_llamafactory_api(tmp_path, tiny_llava, monkeypatch):
    paths = write_llava_bench(tmp_path / "bench")
    predictions = tmp_path / "predictions.jsonl"
    assert run_cli("llava-bench", "predict", "--model", tiny_llava, "--questions", paths["questions"],
                   "--image-folder", paths["images"], "--out", predictions, "--max-new-tokens", "8",
                   "--device", "cpu") == 0
    assert len(predictions.read_text().splitlines()) == 5

    config = tmp_path / "judge.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_llava), "template": "llava_v1",
                                      "infer_backend": "huggingface"}))
    port, log = free_port(), tmp_path / "api.log"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "API_HOST": "127.0.0.1",
           "API_PORT": str(port), "API_KEY": "judge-key-for-test"}  # the API then refuses any other key
    with open(log, "w") as handle:
        server = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", str(config)], stdout=handle,
                                  stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(server, port, log, 180)
        out = tmp_path / "results"
        argv = ["llava-bench", "score", "--questions", paths["questions"], "--contexts", paths["contexts"],
                "--answers", paths["answers"], "--predictions", predictions, "--out-dir", out,
                "--judge-base-url", f"http://127.0.0.1:{port}/v1", "--judge-model", "tiny-llava-judge",
                "--judge-key-env", "JUDGE_KEY", "--judge-max-tokens", "12", "--judge-workers", "1"]
        monkeypatch.setenv("JUDGE_KEY", "judge-key-for-test")
        assert run_cli(*argv) == 0
        first = json.loads((out / "llava_bench_wild.json").read_text())
        assert run_cli(*argv) == 0  # scoring again
        second = json.loads((out / "llava_bench_wild.json").read_text())
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    reviews = [json.loads(line) for line in (out / "llava_bench_wild_reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == 5
    for review in reviews:  # a reply is either two readable scores or, after one re-ask, counted unparsable
        assert (review["scores"] is None) == (len(review["replies"]) == 2)
    assert first["unparsable"] == [r["question_id"] for r in reviews if r["scores"] is None]
    assert first["categories"]["all"]["unparsable"] == len(first["unparsable"])
    assert first["judge_model"] == "tiny-llava-judge" and first["judge_served_models"] == ["tiny-llava-judge"]
    asked = sum(len(r["replies"]) for r in reviews)
    assert first["judge_stats"]["requests"] == asked and first["judge_stats"]["cache_hits"] == 0
    assert second["judge_stats"]["requests"] == 0 and second["judge_stats"]["cache_hits"] == asked
    assert second["categories"] == first["categories"]
    assert (out / "llava_bench_wild.md").is_file() and (out / "llava_bench_wild.png").is_file()
    assert "POST /v1/chat/completions" in log.read_text()
    print(json.dumps([r["replies"] for r in reviews], indent=1))  # shown with -s: what the tiny judge said
