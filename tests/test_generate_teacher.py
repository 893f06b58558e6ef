"""`llava-lf generate` against a real HTTP teacher on loopback that answers from a script.

The teacher knows which image and type a request is about from its messages (the system prompt names
the type, the last user turn holds the image's captions), so each (image, type) pair can be scripted:
good replies, malformed ones, 429 with Retry-After, 500, 400, non-JSON bodies, replies slower than the
timeout. The tests assert the records, the rejections, the failures and the retry counts.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from llava_lf.data.generate.coco import ImageContext, load_contexts
from llava_lf.data.generate.tasks import TASK_TYPES, load_prompts

USAGE = {"prompt_tokens": 100, "completion_tokens": 20}


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the completion's content; None: a good reply for the pair
    finish_reason: str = "stop"
    raw: bytes | None = None  # sent as the body instead of a completion
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    hang_up: bool = False  # close the kept-alive connection after replying, without saying so


@dataclass(frozen=True)
class Seen:
    at: float
    image_id: int
    task: str
    status: int
    authorization: str | None


def good_text(task: str, context: ImageContext) -> str:
    first, second = context.captions[0], context.captions[1]
    if task == "detail":
        return " ".join(context.captions)
    if task == "complex":
        return f"Question: Why might these shapes be arranged this way?\nAnswer: {first}\nThey are spread out."
    return f"Question: What does the picture show?\nAnswer: {first}\nQuestion: Where are they?\nAnswer: {second}"


class ScriptedTeacher:
    """A ThreadingHTTPServer on 127.0.0.1 serving /v1/chat/completions from `script[(image_id, task)]`.

    Each pair's list of Replies is consumed in order; once one is left it repeats. Unscripted pairs get
    good replies. Every request is logged in `seen`.
    """

    def __init__(self, contexts: list[ImageContext], script: dict | None = None):
        self.contexts = {context.captions[0]: context for context in contexts}
        self.systems = {prompt.system: task for task, prompt in load_prompts().tasks.items()}
        self.script = {key: list(replies) for key, replies in (script or {}).items()}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow reply or closed a kept-alive connection

            def do_POST(self) -> None:
                teacher.answer(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_reply(self, key: tuple[int, str]) -> Reply:
        with self.lock:
            replies = self.script.get(key)
            if not replies:
                return Reply()
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def answer(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        task = self.systems[body["messages"][0]["content"]]
        context = self.contexts[body["messages"][-1]["content"].splitlines()[0]]
        reply = self._next_reply((context.image_id, task))
        with self.lock:
            self.seen.append(Seen(time.monotonic(), context.image_id, task, reply.status,
                                  handler.headers.get("Authorization")))
        time.sleep(reply.delay_s)
        if reply.raw is not None:
            payload = reply.raw
        elif reply.status == 200:
            text = good_text(task, context) if reply.text is None else reply.text
            payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "usage": USAGE,
                                  "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                               "message": {"role": "assistant", "content": text}}]}).encode()
        else:
            payload = json.dumps({"error": {"message": f"scripted {reply.status}"}}).encode()
        handler.send_response(reply.status)
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = reply.hang_up

    def count(self, **match) -> int:
        return sum(all(getattr(seen, k) == v for k, v in match.items()) for seen in self.seen)


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
        (b, "detail"): [Reply(429, headers=(("Retry-After", "1"),)), Reply()],
        (b, "conversation"): [Reply(500), Reply(500), Reply()],
        (c, "complex"): [Reply(delay_s=2.5), Reply()],
        (c, "conversation"): [Reply(500)],  # never recovers: fails after 1 + 3 attempts
        (d, "detail"): [Reply(finish_reason="length")],
        (d, "conversation"): [Reply(raw=b"<html>not json</html>")],
        (d, "complex"): [Reply(400)],
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
    first, second = [seen.at for seen in teacher.seen if (seen.image_id, seen.task) == (b, "detail")]
    assert second - first >= 1.0
    assert teacher.count(image_id=c, task="complex") == 2

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
    assert sorted(f"{seen.image_id}-{seen.task}" for seen in teacher.seen) == sorted(failed)
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
    script = {(context.image_id, task): [Reply(401)] for context in contexts for task in TASK_TYPES}
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
