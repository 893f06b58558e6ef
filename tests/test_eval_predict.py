"""The predict phase with the tiny model: resumes (in process and after a real SIGKILL of `llava-lf eval ...
predict`), never duplicates or loses a question, refuses a damaged file, and merges a LoRA adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import BIN
from test_eval_data import many_scienceqa_problems, run_cli, write_pope, write_predictions, write_scienceqa

from llava_lf.evaluation.benchmarks.shapes import demo_requests, evaluate_demo, load_questions, score_demo
from llava_lf.evaluation.predict import Predictor, model_id
from llava_lf.evaluation.prediction_file import PredictionFileError, read_predictions, run_predictions


def complete_lines(path) -> list[bytes]:
    raw = path.read_bytes() if path.exists() else b""
    return raw[: raw.rfind(b"\n") + 1].splitlines()


@pytest.mark.timeout(120)
def test_predict_skips_answered_questions_and_drops_a_torn_line(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)
    out = write_predictions(tmp_path / "predictions.jsonl", {"0": "HAND 0", "1": "HAND 1"}, model_id="tiny")
    with open(out, "ab") as handle:
        handle.write(b'{"question_id": "2", "prompt": "What col')  # a write cut short by a kill
    loads = []

    def load() -> Predictor:
        loads.append(1)
        return Predictor(tiny_llava, max_new_tokens=4)

    summary = run_predictions(requests, out, "tiny", load, batch_size=4)
    assert (summary.already_answered, summary.answered_now, summary.torn_line_dropped) == (2, len(requests) - 2, True)
    records, torn = read_predictions(out)
    assert not torn and sorted(records, key=int) == [r.key for r in requests]
    assert records["0"].text == "HAND 0" and records["1"].text == "HAND 1"  # answered ones were not asked again
    assert records["2"].prompt == requests[2].question
    again = run_predictions(requests, out, "tiny", load)
    assert (again.already_answered, again.answered_now, len(loads)) == (len(requests), 0, 1)  # no model load


def test_a_damaged_predictions_file_is_an_error_naming_the_line(tmp_path):
    requests = []
    path = tmp_path / "p.jsonl"
    path.write_text('{"question_id": "1", "prompt": "", "text": "a", "model_id": "m"}\nnot json\n'
                    '{"question_id": "3", "prompt": "", "text": "c", "model_id": "m"}\n')
    with pytest.raises(PredictionFileError, match=r"p.jsonl, line 2: not a prediction record"):
        run_predictions(requests, path, "m", Predictor)
    write_predictions(path, {"1": "a"})
    with open(path, "a") as handle:
        handle.write(json.dumps({"question_id": "1", "prompt": "", "text": "b", "model_id": "hand-written"}) + "\n")
    with pytest.raises(PredictionFileError, match=r"line 2: question_id '1' appears twice"):
        read_predictions(path)
    write_predictions(path, {"1": "a"}, model_id="/models/other")
    with pytest.raises(PredictionFileError, match=r"answers from another model \(/models/other\)"):
        run_predictions(requests, path, "/models/mine", Predictor)


def test_model_id_changes_when_the_weights_change(tmp_path):
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"x" * 10)
    before = model_id(weights.parent)
    assert model_id(weights.parent) == before and before.startswith(str(weights.parent.resolve()))
    weights.write_bytes(b"y" * 11)  # re-trained into the same folder
    after = model_id(weights.parent)
    assert after != before
    write_predictions(tmp_path / "p.jsonl", {"1": "a"}, model_id=before)
    with pytest.raises(PredictionFileError, match="answers from another model"):
        run_predictions([], tmp_path / "p.jsonl", after, Predictor)
    assert model_id(weights.parent, tmp_path / "model") != after  # an adapter is part of the identity


def test_answer_files_from_llava_scripts_are_read(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"question_id": 12, "prompt": "Q?", "text": "B", "answer_id": "aB3",
                                "model_id": "llava-v1.5-13b", "metadata": {}}) + "\n")
    record = read_predictions(path)[0]["12"]
    assert (record.question_id, record.text, record.model_id) == ("12", "B", "llava-v1.5-13b")


@pytest.mark.timeout(120)
def test_pope_and_demo_predict_then_score_through_the_cli(tmp_path, tiny_llava, demo_data):
    annotations = write_pope(tmp_path / "pope", {"random": ["yes", "no", "yes"], "popular": ["no", "yes"]})
    common = ["--model", tiny_llava, "--max-new-tokens", "2", "--device", "cpu", "--batch-size", "2"]
    assert run_cli("pope", "predict", *common, "--annotations", annotations, "--image-folder",
                   tmp_path / "pope" / "val2014", "--out", tmp_path / "pope.jsonl") == 0
    assert run_cli("pope", "score", "--annotations", annotations, "--predictions", tmp_path / "pope.jsonl",
                   "--out-dir", tmp_path / "results") == 0
    pope_result = json.loads((tmp_path / "results" / "pope.json").read_text())
    assert {split: m["questions"] for split, m in pope_result["splits"].items()} == {"random": 3, "popular": 2}
    data, _ = demo_data
    assert run_cli("demo", "predict", *common, "--questions", data.test_questions, "--image-folder", data.image_dir,
                   "--out", tmp_path / "demo.jsonl", "--limit", "7") == 0
    assert run_cli("demo", "score", "--questions", data.test_questions, "--predictions", tmp_path / "demo.jsonl",
                   "--out-dir", tmp_path / "results", "--allow-partial") == 0
    demo_result = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert demo_result["scores"]["all"]["questions"] == 7
    assert len(demo_result["missing"]) == len(load_questions(data.test_questions)) - 7


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_predict_resumes_after_sigkill_without_duplicates_or_losses(tmp_path, tiny_llava):
    problems = many_scienceqa_problems(30)
    data = write_scienceqa(tmp_path / "sqa", problems)
    out = tmp_path / "predictions.jsonl"
    command = [str(BIN / "llava-lf"), "eval", "scienceqa", "predict", "--model", str(tiny_llava), "--data", str(data),
               "--out", str(out), "--batch-size", "1", "--max-new-tokens", "2", "--device", "cpu"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 200
    while len(complete_lines(out)) < 3:
        assert process.poll() is None, f"finished before it could be killed:\n{process.stdout.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, "no answers within 200 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = complete_lines(out)
    assert 3 <= len(kept) < len(problems), "the kill did not land mid-run"
    with open(out, "ab") as handle:  # whether or not the kill tore the last line, make this run recover one
        handle.write(b'{"question_id": "10')

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "dropped a torn last line" in rerun.stdout
    assert f"{len(problems)} questions, {len(kept)} already answered, {len(problems) - len(kept)} answered now" in rerun.stdout
    lines = complete_lines(out)
    assert lines[: len(kept)] == kept  # what the killed run wrote is untouched
    ids = [json.loads(line)["question_id"] for line in lines]
    assert len(ids) == len(set(ids)) == len(problems) and set(ids) == set(problems)
    assert out.read_bytes().endswith(b"\n")


@pytest.mark.timeout(120)
def test_adapter_is_merged_onto_the_base(tmp_path, tiny_llava, demo_data):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)[:6]
    torch.manual_seed(0)
    base = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # LoRA starts as a no-op; make it change the answers
    lora.save_pretrained(tmp_path / "adapter")
    merged_dir = tmp_path / "merged"
    lora.merge_and_unload().save_pretrained(merged_dir)
    AutoProcessor.from_pretrained(tiny_llava).save_pretrained(merged_dir)

    def answers(predictor):
        return [p.answer for p in predictor.predict(requests, batch_size=3)]

    with_adapter = answers(Predictor(tiny_llava, max_new_tokens=6, adapter_dir=tmp_path / "adapter"))
    assert with_adapter == answers(Predictor(merged_dir, max_new_tokens=6))
    assert with_adapter != answers(Predictor(tiny_llava, max_new_tokens=6))


@pytest.mark.timeout(120)
def test_evaluate_demo_predicts_then_scores_with_the_demo_scoring(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    predictions = tmp_path / "eval_after.jsonl"
    scores = evaluate_demo(tiny_llava, data.test_questions, data.image_dir, predictions, label="eval", max_new_tokens=4)
    questions = load_questions(data.test_questions)
    assert scores["all"].questions == len(questions) == len(read_predictions(predictions)[0])
    assert scores == score_demo(data.test_questions, predictions)[0]
    write_predictions(predictions, {"0": "stale"}, model_id="an older model")
    assert evaluate_demo(tiny_llava, data.test_questions, data.image_dir, predictions, max_new_tokens=4,
                         fresh=True) == scores  # fresh: the stale file is replaced, not resumed
