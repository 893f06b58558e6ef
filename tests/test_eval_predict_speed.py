"""benchmarks/eval_predict_speed.py runs on a handful of demo questions with the tiny model. Checked is what it
measured: the vision tower saw exactly the batches each run claims (every question once per repeat, one at a
time or in batches), both runs gave the same answers, and the printed figures are those of the recorded times."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.host, pytest.mark.timeout(180)]


def load_script():
    spec = importlib.util.spec_from_file_location("eval_predict_speed", REPO / "benchmarks" / "eval_predict_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_both_runs_answer_every_question_in_their_batch_sizes_and_agree(tmp_path, tiny_llava, demo_data, capsys):
    import torch

    data, _ = demo_data
    script = load_script()
    figures = tmp_path / "speed.json"
    images_per_call: list[int] = []  # the vision tower runs once per generate call, on that call's images

    def count_images(module, args):
        if type(module).__name__ == "CLIPVisionModel":
            images_per_call.append(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count_images)
    try:
        code = script.main(["--model", str(tiny_llava), "--demo-questions", str(data.test_questions),
                            "--image-folder", str(data.image_dir), "--questions", "6", "--batch-size", "4",
                            "--max-new-tokens", "3", "--repeats", "2", "--json", str(figures)])
    finally:
        handle.remove()
    out = capsys.readouterr().out
    assert code == 0
    # Warm-up (2 questions in one batch), then per repeat: one at a time (6 calls of 1), batched (4 + 2).
    assert images_per_call == [2] + ([1] * 6 + [4, 2]) * 2

    written = json.loads(figures.read_text())
    answers = written["answers"]
    assert len(answers["one at a time"]) == 6 and answers["batched"] == answers["one at a time"]
    assert written["identical"] == 6 and written["differing"] == [] and "differs" not in out
    single, batched = written["one_at_a_time"]["seconds"], written["batched"]["seconds"]
    assert len(single) == len(batched) == 2 and all(seconds > 0 for seconds in single + batched)
    # The printed speed-up is that of the fastest recorded repeat of each run.
    assert re.search(r"^speed-up: (\S+)x$", out, re.MULTILINE)[1] == f"{min(single) / min(batched):.2f}"
    assert "answers identical: 6 of 6" in out


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
