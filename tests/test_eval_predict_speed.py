"""benchmarks/eval_predict_speed.py runs on a handful of demo questions with the tiny model: batched and
one-at-a-time answers are compared (and equal), the count matches, and the printout reads as documented."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.host, pytest.mark.timeout(180)]

LINE = {
    "header": re.compile(r"questions: (\d+)  max_new_tokens: (\d+)  device: cpu  torch threads: (\d+)  repeats: (\d+)"),
    "single": re.compile(r"one at a time \(batch size 1\): ([\d.]+) s, ([\d.]+) questions/s \(best of ([\d. /]+) s\)"),
    "batched": re.compile(r"batched \(batch size (\d+)\): ([\d.]+) s, ([\d.]+) questions/s \(best of ([\d. /]+) s\)"),
    "speedup": re.compile(r"speed-up: ([\d.]+)x"),
    "identical": re.compile(r"answers identical: (\d+) of (\d+)"),
}


def load_script():
    spec = importlib.util.spec_from_file_location("eval_predict_speed", REPO / "benchmarks" / "eval_predict_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_compares_equal_answers_and_prints_its_figures(tmp_path, tiny_llava, demo_data, capsys):
    data, _ = demo_data
    script = load_script()
    figures = tmp_path / "speed.json"
    code = script.main(["--model", str(tiny_llava), "--demo-questions", str(data.test_questions),
                        "--image-folder", str(data.image_dir), "--questions", "6", "--batch-size", "4",
                        "--max-new-tokens", "3", "--repeats", "2", "--json", str(figures)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(lines) == 5, lines  # no "differs" lines
    found = {name: pattern.fullmatch(line) for (name, pattern), line in zip(LINE.items(), lines, strict=True)}
    assert all(found.values()), lines
    assert found["header"].group(1, 2, 4) == ("6", "3", "2")
    assert found["batched"].group(1) == "4"
    single_times = [float(t) for t in found["single"].group(3).split(" / ")]
    assert len(single_times) == 2 and float(found["single"].group(1)) == min(single_times)
    assert found["identical"].group(1, 2) == ("6", "6")
    single_rate, batched_rate = float(found["single"].group(2)), float(found["batched"].group(3))
    assert single_rate > 0 and batched_rate > 0
    assert float(found["speedup"].group(1)) == pytest.approx(batched_rate / single_rate, rel=0.02)

    written = json.loads(figures.read_text())
    assert written["questions"] == 6 and written["identical"] == 6 and written["differing"] == []
    assert written["one_at_a_time"]["batch_size"] == 1 and written["batched"]["batch_size"] == 4
    assert len(written["batched"]["seconds"]) == 2
    assert written["speedup"] == pytest.approx(written["questions_per_s"]["batched"]
                                               / written["questions_per_s"]["one_at_a_time"])


def test_differing_answers_are_listed_and_fail_the_run(tiny_llava, demo_data, monkeypatch, capsys):
    """A batch that changed an answer must not pass as a speed-up: the run lists it and exits 1."""
    data, _ = demo_data
    script = load_script()
    from llava_lf.evaluation.predict import Prediction, Predictor

    real_predict = Predictor.predict

    def predict_with_a_flip(self, requests, batch_size=32, desc="predict"):
        for index, prediction in enumerate(real_predict(self, requests, batch_size, desc)):
            flipped = batch_size > 1 and index == 1
            yield Prediction(prediction.key, prediction.answer + " (changed)") if flipped else prediction

    monkeypatch.setattr(Predictor, "predict", predict_with_a_flip)
    code = script.main(["--model", str(tiny_llava), "--demo-questions", str(data.test_questions),
                        "--image-folder", str(data.image_dir), "--questions", "3", "--batch-size", "3",
                        "--max-new-tokens", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "answers identical: 2 of 3" in out
    assert re.search(r"^  differs .+: one at a time '.*', batched '.* \(changed\)'$", out, re.MULTILINE)
