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

from llava_lf.evaluation.predict import GenerationSettings, PredictionRequest, Predictor, model_id, question_hash
from llava_lf.evaluation.prediction_file import (
    PredictionFileError,
    new_record,
    read_predictions,
    run_predictions,
)
from llava_lf.evaluation.tasks.demo import demo_requests, evaluate_demo, load_questions, score_demo

pytestmark = pytest.mark.host

SETTINGS = GenerationSettings("llava_v1", 4, "float32")


def write_records(path, requests, texts, model="tiny", settings=SETTINGS, newline=True):
    """Records as `predict` writes them (LLaVA's fields plus our question hash and settings)."""
    from dataclasses import asdict

    lines = [json.dumps(asdict(new_record(r, t, model, asdict(settings), question_hash(r)))) for r, t in zip(requests, texts)]
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


def complete_lines(path) -> list[bytes]:
    raw = path.read_bytes() if path.exists() else b""
    return raw[: raw.rfind(b"\n") + 1].splitlines()


@pytest.mark.timeout(120)
def test_predict_skips_answered_questions_and_drops_a_torn_line(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)
    out = write_records(tmp_path / "predictions.jsonl", requests[:2], ["HAND 0", "HAND 1"])
    with open(out, "ab") as handle:
        handle.write(b'{"question_id": "2", "prompt": "What col')  # a write cut short by a kill
    loads = []

    def load() -> Predictor:
        loads.append(1)
        return Predictor(tiny_llava, max_new_tokens=4)

    summary = run_predictions(requests, out, "tiny", load, SETTINGS, batch_size=4)
    assert (summary.already_answered, summary.answered_now, summary.torn_line_dropped) == (2, len(requests) - 2, True)
    records, torn = read_predictions(out)
    assert not torn and list(records) == [r.key for r in requests]
    first, second = requests[0].key, requests[1].key
    assert records[first].text == "HAND 0" and records[second].text == "HAND 1"  # not asked again
    assert records[requests[2].key].prompt == "<image>\n" + requests[2].question  # as LLaVA's answer files
    again = run_predictions(requests, out, "tiny", load, SETTINGS)
    assert (again.already_answered, again.answered_now, len(loads)) == (len(requests), 0, 1)  # no model load


def test_a_damaged_predictions_file_is_an_error_naming_the_line(tmp_path):
    requests = []
    path = tmp_path / "p.jsonl"
    path.write_text('{"question_id": "1", "prompt": "", "text": "a", "model_id": "m"}\nnot json\n'
                    '{"question_id": "3", "prompt": "", "text": "c", "model_id": "m"}\n')
    with pytest.raises(PredictionFileError, match=r"p.jsonl, line 2: not a prediction record"):
        run_predictions(requests, path, "m", Predictor, SETTINGS)
    write_predictions(path, {"1": "a"})
    with open(path, "a") as handle:
        handle.write(json.dumps({"question_id": "1", "prompt": "", "text": "b", "model_id": "hand-written"}) + "\n")
    with pytest.raises(PredictionFileError, match=r"lines 1 and 2: question_id '1' .* answered twice, differently"):
        read_predictions(path)
    write_predictions(path, {"1": "a"}, model_id="/models/other")
    with pytest.raises(PredictionFileError, match=r"answers from another model \(/models/other\)"):
        run_predictions(requests, path, "/models/mine", Predictor, SETTINGS)


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
        run_predictions([], tmp_path / "p.jsonl", after, Predictor, SETTINGS)
    assert model_id(weights.parent, tmp_path / "model") != after  # an adapter is part of the identity


def test_answer_files_from_llava_scripts_are_read(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"question_id": 12, "prompt": "Q?", "text": "B", "answer_id": "aB3",
                                "model_id": "llava-v1.5-13b", "metadata": {}}) + "\n")
    record = read_predictions(path)[0]["12"]
    assert (record.question_id, record.text, record.model_id) == (12, "B", "llava-v1.5-13b")  # the id keeps its type


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
@pytest.mark.timeout(600)
def test_predict_resumes_after_sigkill_without_duplicates_or_losses(tmp_path, tiny_llava):
    """SIGKILL `llava-lf eval scienceqa predict` at three random points (seeded, printed), rerunning after
    each; then a torn last line; the final rerun finishes with every question answered exactly once."""
    import random

    seed = random.randrange(1 << 16)
    print(f"kill points seed {seed}")
    rng = random.Random(seed)
    problems = many_scienceqa_problems(150)  # enough that a random kill always lands before the end on a fast machine
    data = write_scienceqa(tmp_path / "sqa", problems)
    out = tmp_path / "predictions.jsonl"
    command = [str(BIN / "llava-lf"), "eval", "scienceqa", "predict", "--model", str(tiny_llava), "--data", str(data),
               "--out", str(out), "--batch-size", "1", "--max-new-tokens", "2", "--device", "cpu"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    kept: list[bytes] = []
    for _ in range(3):
        target = len(kept) + rng.randint(1, 4)  # kill once this many answers are on disk, plus a random delay
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 200
        while len(complete_lines(out)) < target:
            assert process.poll() is None, f"finished before it could be killed:\n{process.stdout.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "no answers within 200 s"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        lines = complete_lines(out)
        assert lines[: len(kept)] == kept and len(lines) < len(problems), "the kill did not land mid-run"
        kept = lines
    with open(out, "ab") as handle:  # whether or not the last kill tore the last line, make this run recover one
        handle.write(b'{"question_id": "10')

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "dropped a torn last line" in rerun.stdout
    assert f"{len(problems)} questions, {len(kept)} already answered, {len(problems) - len(kept)} answered now" in rerun.stdout
    lines = complete_lines(out)
    assert lines[: len(kept)] == kept  # what the killed runs wrote is untouched
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


def never_loaded() -> Predictor:
    raise AssertionError("the model was loaded although every question is answered")


def test_a_last_record_without_its_newline_is_kept(tmp_path, demo_data):
    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)[:3]
    out = write_records(tmp_path / "p.jsonl", requests, ["a", "b", "c"], newline=False)
    summary = run_predictions(requests, out, "tiny", never_loaded, SETTINGS)
    assert (summary.already_answered, summary.torn_line_dropped) == (3, False)
    assert [r.text for r in read_predictions(out)[0].values()] == ["a", "b", "c"]


@pytest.mark.timeout(120)
def test_a_kept_unterminated_record_is_ended_before_appending(tmp_path, tiny_llava, demo_data):
    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)[:4]
    out = write_records(tmp_path / "p.jsonl", requests[:2], ["a", "b"], newline=False)
    run_predictions(requests, out, "tiny", lambda: Predictor(tiny_llava, max_new_tokens=4), SETTINGS)
    records = read_predictions(out)[0]
    assert list(records) == [r.key for r in requests] and records[requests[1].key].text == "b"
    assert out.read_bytes().endswith(b"\n") and len(complete_lines(out)) == 4


def test_resume_refuses_other_generation_settings(tmp_path, demo_data):
    data, _ = demo_data
    requests = demo_requests(load_questions(data.test_questions), data.image_dir)[:2]
    out = write_records(tmp_path / "p.jsonl", requests[:1], ["a"])
    for changed in (GenerationSettings("vicuna", 4, "float32"), GenerationSettings("llava_v1", 5, "float32"),
                    GenerationSettings("llava_v1", 4, "bfloat16")):
        with pytest.raises(PredictionFileError, match="other generation settings"):
            run_predictions(requests, out, "tiny", never_loaded, changed)
    legacy = write_predictions(tmp_path / "legacy.jsonl", {requests[0].key: "a"}, model_id="tiny")  # no settings
    with pytest.raises(PredictionFileError, match=r"other generation settings \(\(none recorded\)"):
        run_predictions(requests, legacy, "tiny", never_loaded, SETTINGS)


def test_reordered_questions_stay_answered_and_edited_ones_are_refused(tmp_path, demo_data):
    data, _ = demo_data
    rows = load_questions(data.test_questions)[:6]
    requests = demo_requests(rows, data.image_dir)
    out = write_records(tmp_path / "p.jsonl", requests, [r["answer"] for r in rows])
    reordered = demo_requests(list(reversed(rows)), data.image_dir)
    assert run_predictions(reordered, out, "tiny", never_loaded, SETTINGS).already_answered == 6
    edited = [dict(row) for row in rows]
    edited[2]["question"] += " Answer in French."
    with pytest.raises(AssertionError, match="was loaded"):  # the demo's ids are its content: a new question
        run_predictions(demo_requests(edited, data.image_dir), out, "tiny", never_loaded, SETTINGS)
    # Benchmarks with ids of their own (ScienceQA's pids): same id, other prompt -> the stored answer is stale.
    by_id = [PredictionRequest(str(i), row["question"], data.image_dir / row["image"]) for i, row in enumerate(rows)]
    id_out = write_records(tmp_path / "ids.jsonl", by_id, [r["answer"] for r in rows])
    by_id[2] = PredictionRequest("2", edited[2]["question"], by_id[2].image)
    with pytest.raises(PredictionFileError, match=r"1 question\(s\) whose prompt or image has changed"):
        run_predictions(by_id, id_out, "tiny", never_loaded, SETTINGS)
    images = tmp_path / "images"
    images.mkdir()
    for row in rows:  # the same pictures in another folder still match (by content, not path) ...
        (images / row["image"]).write_bytes((data.image_dir / row["image"]).read_bytes())
    assert run_predictions(demo_requests(rows, images), out, "tiny", never_loaded, SETTINGS).already_answered == 6
    (images / rows[0]["image"]).write_bytes((data.image_dir / rows[5]["image"]).read_bytes())  # ... a new one does not
    changed = [row for row in rows if row["image"] == rows[0]["image"]]
    if rows[5]["image"] != rows[0]["image"]:
        with pytest.raises(PredictionFileError, match=rf"{len(changed)} question\(s\) whose prompt or image"):
            run_predictions(demo_requests(rows, images), out, "tiny", never_loaded, SETTINGS)
