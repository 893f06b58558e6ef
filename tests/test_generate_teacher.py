"""`llava-lf generate` against a real HTTP teacher on loopback that answers from a script (helpers.fake_openai).

The teacher knows which image and type a request is about from its messages (the system prompt names
the type, the last user turn holds the image's captions), so each (image, type) pair can be scripted:
good replies, malformed ones, 429 with Retry-After, 500, 400, non-JSON bodies, replies slower than the
timeout. The tests assert the records, the rejections, the failures and the retry counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import BIN
from helpers.fake_openai import FakeOpenAI, Reply, ScriptedTeacher, status

from llava_lf.data.generate.coco import load_contexts
from llava_lf.data.generate.tasks import TASK_TYPES, load_prompts


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """Six synthetic scenes written as COCO captions/instances files, with their rendered contexts."""
    from llava_lf.demo.dataset import write_demo_data

    data = write_demo_data(tmp_path_factory.mktemp("coco"), n_train=6, n_test=1, image_size=48, seed=0)
    captions, instances = data.root / "captions_train.json", data.root / "instances_train.json"
    contexts, _ = load_contexts(captions, instances)
    return data, captions, instances, contexts


def _cli(argv: list[str]) -> int:
    from llava_lf.cli import build_parser

    args = build_parser().parse_args(["generate", *argv])
    return args.run(args)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(60)
def test_scripted_teacher_outputs_rejects_and_retries(tmp_path, coco, capsys, monkeypatch):
    from llava_lf.data.convert import convert_file

    data, captions, instances, contexts = coco
    a, b, c, d = (context.image_id for context in contexts[:4])
    script = {
        (a, "conversation"): [Reply(text="Sorry, I cannot see images.")],
        (a, "complex"): [Reply(text="Question: Why?\nAnswer: Because.\nQuestion: And?\nAnswer: So.")],
        (a, "detail"): [Reply(text="The first caption says there is a red circle on a plain grey background here.")],
        (b, "detail"): [status(429, Retry_After="1"), Reply()],
        (b, "conversation"): [status(500), status(500), Reply()],
        (c, "complex"): [Reply(delay_s=2.5), Reply()],
        (c, "conversation"): [status(500)],  # never recovers: fails after 1 + 3 attempts
        (d, "detail"): [Reply(finish_reason="length")],
        (d, "conversation"): [Reply(raw=b"<html>not json</html>")],
        (d, "complex"): [status(400)],
    }
    monkeypatch.setenv("TEACHER_TEST_KEY", "sk-test-do-not-leak-42")
    out = tmp_path / "gen.jsonl"
    argv = ["--captions", str(captions), "--instances", str(instances), "--out", str(out),
            "--teacher-model", "scripted", "--api-key-env", "TEACHER_TEST_KEY", "--concurrency", "4",
            "--timeout", "1", "--max-retries", "3", "--backoff", "0.01", "--no-progress"]
    with ScriptedTeacher(contexts, script) as teacher:
        code = _cli(argv + ["--teacher-base-url", teacher.url])

    assert code == 1  # some pairs failed for good: a rerun retries them
    every = {f"{context.image_id}-{task}" for context in contexts for task in TASK_TYPES}
    records = {row["id"]: row for row in _rows(out)}
    rejected = {row["id"]: row["reason"] for row in _rows(tmp_path / "gen.rejected.jsonl")}
    assert rejected == {f"{a}-conversation": "no_exchanges", f"{a}-complex": "exchange_count",
                        f"{a}-detail": "mentions_context", f"{d}-detail": "truncated"}
    failed = {f"{c}-conversation", f"{d}-conversation", f"{d}-complex"}
    assert set(records) == every - set(rejected) - failed
    report = json.loads((tmp_path / "gen.report.json").read_text())
    assert {f["id"]: (f["reason"], f["attempts"]) for f in report["failures"]} == {
        f"{c}-conversation": ("http_500", 4), f"{d}-conversation": ("bad_response", 1), f"{d}-complex": ("http_400", 1)}
    assert report["retries"] == {"http_429": 1, "http_500": 2 + 3, "timeout": 1}
    assert report["requests"] == len(teacher.seen) == len(every) + 1 + 2 + 1 + 3
    answered = teacher.count(status=200) - 2  # the non-JSON 200 and the timed-out one brought no usage
    assert (report["prompt_tokens"], report["completion_tokens"]) == (100 * answered, 20 * answered)

    # Retry-After: 1 was honoured; the timed-out request was asked again.
    first, second = [seen.at for seen in teacher.seen if seen.tag == (b, "detail")]
    assert second - first >= 1.0
    assert teacher.count(tag=(c, "complex")) == 2

    # The records are LLaVA JSON with the scripted content; the key went only into the header.
    conversation = records[f"{b}-conversation"]["conversations"]
    assert conversation[0] == {"from": "human", "value": "<image>\nWhat does the picture show?"}
    assert conversation[1]["value"] == contexts[1].captions[0] and len(conversation) == 4
    detail = records[f"{b}-detail"]["conversations"]
    assert detail[0]["value"].startswith("<image>\n") and detail[0]["value"][8:] in load_prompts().detail_instructions
    assert {seen.authorization for seen in teacher.seen} == {"Bearer sk-test-do-not-leak-42"}
    printed = capsys.readouterr()
    for path in tmp_path.iterdir():
        assert "sk-test-do-not-leak-42" not in path.read_text()
    assert "sk-test-do-not-leak-42" not in printed.out + printed.err
    assert "tokens: prompt" in printed.out and "http_429 1" in printed.out

    # The output feeds `llava-lf convert` unchanged.
    conversion = convert_file(out, data.image_dir, tmp_path / "datasets", "generated")
    assert (conversion.written, conversion.rejections) == (len(records), [])

    # A rerun asks only for the failed pairs (rejections count as finished) and completes them.
    with ScriptedTeacher(contexts) as teacher:
        assert _cli(argv + ["--teacher-base-url", teacher.url]) == 0
    assert sorted(teacher.pairs()) == sorted(failed)
    assert {row["id"] for row in _rows(out)} == every - set(rejected)
    assert len(_rows(out)) == len(every) - len(rejected)


@pytest.mark.timeout(30)
def test_requests_per_minute_spaces_requests(tmp_path, coco):
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation

    _, captions, instances, contexts = coco
    with ScriptedTeacher(contexts) as teacher:
        config = TeacherConfig(base_url=teacher.url, model="scripted", requests_per_minute=600)  # one per 0.1 s
        report = run_generation(GenerateJob(captions, instances, ["conversation"], tmp_path / "g.jsonl", config,
                                            concurrency=6, progress=False))
    starts = sorted(seen.at for seen in teacher.seen)
    assert report.written["conversation"] == len(starts) == 6
    assert starts[-1] - starts[0] >= 5 * 0.1 - 0.02  # six starts, 0.1 s apart, although six threads were free


@pytest.mark.timeout(30)
def test_fatal_status_stops_the_run(tmp_path, coco):
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation

    _, captions, instances, contexts = coco
    script = {(context.image_id, task): [status(401)] for context in contexts for task in TASK_TYPES}
    with ScriptedTeacher(contexts, script) as teacher:
        config = TeacherConfig(base_url=teacher.url, model="scripted", backoff_s=0.01)
        report = run_generation(GenerateJob(captions, instances, list(TASK_TYPES), tmp_path / "g.jsonl", config,
                                            concurrency=1, progress=False))
    assert report.aborted and "API key" in report.aborted
    assert len(teacher.seen) == 1  # one refusal is enough: the key is wrong for every request
    assert report.unfinished == len(contexts) * len(TASK_TYPES)
    assert Counter(failure.reason for failure in report.failures) == {"http_401": 1}


@pytest.mark.timeout(30)
def test_connections_closed_by_the_server_are_reopened_without_a_retry(tmp_path, coco):
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation

    _, captions, instances, contexts = coco
    script = {(context.image_id, "conversation"): [Reply(hang_up=True)] for context in contexts}
    with ScriptedTeacher(contexts, script) as teacher:
        config = TeacherConfig(base_url=teacher.url, model="scripted", backoff_s=5.0)  # a retry would show
        began = time.monotonic()
        report = run_generation(GenerateJob(captions, instances, ["conversation"], tmp_path / "g.jsonl", config,
                                            concurrency=1, progress=False))
    assert report.written["conversation"] == len(teacher.seen) == report.requests == len(contexts)
    assert not report.retries and time.monotonic() - began < 2.5


@pytest.mark.timeout(30)
def test_a_redirect_stops_the_run_and_the_key_never_leaves_the_origin(tmp_path, coco, monkeypatch):
    from llava_lf.data.generate import GenerateJob, TeacherConfig, run_generation

    _, captions, instances, contexts = coco
    monkeypatch.setenv("TEACHER_TEST_KEY", "sk-redirected-31c7")
    with FakeOpenAI() as elsewhere:
        moved = status(307, Location=f"{elsewhere.url}/chat/completions")
        script = {(context.image_id, task): [moved] for context in contexts for task in TASK_TYPES}
        with ScriptedTeacher(contexts, script) as teacher:
            config = TeacherConfig(base_url=teacher.url, model="scripted", api_key_env="TEACHER_TEST_KEY")
            report = run_generation(GenerateJob(captions, instances, list(TASK_TYPES), tmp_path / "g.jsonl", config,
                                                concurrency=1, progress=False))
    assert elsewhere.seen == []  # neither the key nor the prompt went to the other origin
    assert len(teacher.seen) == 1  # a redirect is a setting to fix: one is enough to stop
    assert report.aborted and f"redirect to {elsewhere.origin}" in report.aborted
    assert "--teacher-base-url" in report.aborted


@pytest.mark.timeout(60)
def test_a_teacher_echoing_the_key_leaves_it_nowhere(tmp_path, coco):
    """The key in error bodies and replies never reaches the report, the records, the rejections or the terminal."""
    _, captions, instances, contexts = coco
    secret = "sk-echoed-9a4f7d21"
    echo = f'{{"error": {{"message": "invalid request", "auth": "Bearer {secret}"}}}}'.encode()
    a, b, c, d = (context.image_id for context in contexts[:4])
    script = {
        (a, "conversation"): [status(500, echo)],  # retries exhausted: the last error is in the report
        (b, "conversation"): [status(400, echo)],  # failed at once, with the body quoted in the report
        (c, "conversation"): [Reply(text=f"I was called with {secret}.")],  # rejected, reply kept
        (d, "detail"): [Reply(text=f"{contexts[3].captions[0]} The key was {secret} today.")],  # written
    }
    out = tmp_path / "gen.jsonl"
    with ScriptedTeacher(contexts, script) as teacher:
        result = subprocess.run(
            [str(BIN / "llava-lf"), "generate", "--captions", str(captions), "--instances", str(instances),
             "--out", str(out), "--teacher-base-url", teacher.url, "--teacher-model", "scripted",
             "--api-key-env", "ECHO_KEY", "--max-retries", "1", "--backoff", "0.01", "--no-progress"],
            env={**os.environ, "ECHO_KEY": secret}, capture_output=True, text=True, timeout=50, check=False)
    assert result.returncode == 1, result.stdout + result.stderr  # two pairs failed
    assert {seen.authorization for seen in teacher.seen} == {f"Bearer {secret}"}
    report = json.loads((tmp_path / "gen.report.json").read_text())
    failures = {failure["id"]: failure["message"] for failure in report["failures"]}
    assert "Bearer ***" in failures[f"{a}-conversation"] and "Bearer ***" in failures[f"{b}-conversation"]
    rejected = {row["id"]: row for row in map(json.loads, (tmp_path / "gen.rejected.jsonl").read_text().splitlines())}
    assert rejected[f"{c}-conversation"]["reply"] == "I was called with ***."
    records = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert "The key was *** today." in records[f"{d}-detail"]["conversations"][1]["value"]
    for path in tmp_path.iterdir():
        assert secret not in path.read_text(), path
    assert secret not in result.stdout + result.stderr
