"""The judge client against a real HTTP server on loopback with scripted replies: malformed scores,
429 with Retry-After, 500, a reply slower than the timeout, refusals; the key never leaks; replies are
cached by content. Then `llava-lf eval llava-bench score` end to end against the same kind of server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest
from test_eval_data import run_cli, write_llava_bench, write_predictions

from llava_lf.evaluation.benchmarks import llava_bench
from llava_lf.evaluation.judge import JudgeClient, JudgeConfig, JudgeError, retry_after_seconds

pytestmark = pytest.mark.timeout(60)


def completion(text: str, model: str = "judge-0613") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


# A reply: (status, body (dict -> JSON, bytes as is), extra headers, seconds to wait before answering)
Reply = tuple[int, dict | bytes, dict[str, str], float]


def ok(text: str, delay: float = 0.0) -> Reply:
    return 200, completion(text), {}, delay


class JudgeServer:
    """A ThreadingHTTPServer on 127.0.0.1 answering POSTs from `respond(request_body, index)`."""

    def __init__(self, respond: Callable[[dict, int], Reply]):
        self.requests: list[dict] = []  # {"time", "headers", "body"}
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    index = len(server.requests)
                    server.requests.append({"time": time.monotonic(), "headers": dict(self.headers), "body": body,
                                            "path": self.path})
                status, payload, headers, delay = respond(body, index)
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout case)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def scripted(*replies: Reply) -> JudgeServer:
    return JudgeServer(lambda body, index: replies[min(index, len(replies) - 1)])


def client(server: JudgeServer, **overrides) -> JudgeClient:
    settings = {"base_url": server.url, "model": "judge", "api_key_env": None, "timeout": 5.0, "max_attempts": 4,
                "backoff": 0.05} | overrides
    return JudgeClient(JudgeConfig(**settings))


ITEM = llava_bench.BenchQuestion("7", "001.jpg", "What colour is the ball?", "conv", "A red ball.", False, "It is red.")


def test_malformed_scores_are_asked_again_then_counted_unparsable():
    with scripted(ok("Score: 8 out of 10"), ok("8 7\nAssistant 1 is exact."), ok("Both are fine."), ok("11 12")) as server:
        judge = client(server)
        good = llava_bench.judge_one(judge, ITEM, "Red.", reasks=1)
        bad = llava_bench.judge_one(judge, ITEM, "Blue.", reasks=1)
    assert good.scores == (8.0, 7.0) and good.replies == ("Score: 8 out of 10", "8 7\nAssistant 1 is exact.")
    assert bad.scores is None and bad.replies == ("Both are fine.", "11 12")
    reask = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"] == "Score: 8 out of 10" and reask[3]["content"] == llava_bench.REASK
    assert good.served_model == "judge-0613"
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_429_waits_as_long_as_retry_after_says():
    with scripted((429, {"error": "slow down"}, {"Retry-After": "1"}, 0.0), ok("9 8")) as server:
        judge = client(server, backoff=0.01)
        reply = judge.complete([{"role": "user", "content": "hi"}])
    assert reply.text == "9 8" and not reply.cached
    gap = server.requests[1]["time"] - server.requests[0]["time"]
    assert gap >= 0.95  # Retry-After (1 s), not the 0.01 s backoff
    assert judge.stats.as_dict() == {"requests": 2, "cache_hits": 0, "retries": 1, "failures": 1,
                                         "failures_by_kind": {"HTTP 429": 1}}


def test_500_is_retried_with_growing_backoff():
    with scripted((500, b"internal error", {}, 0.0), (502, b"bad gateway", {}, 0.0), ok("6 5")) as server:
        judge = client(server, backoff=0.2)
        assert judge.complete([{"role": "user", "content": "hi"}]).text == "6 5"
    times = [request["time"] for request in server.requests]
    assert times[1] - times[0] >= 0.19 and times[2] - times[1] >= 0.39  # 0.2 s, then doubled
    assert judge.stats.failures_by_kind == {"HTTP 500": 1, "HTTP 502": 1}


def test_a_reply_slower_than_the_timeout_is_abandoned_and_retried():
    with scripted(ok("1 1", delay=3.0), ok("7 7")) as server:
        judge = client(server, timeout=0.5)
        started = time.monotonic()
        assert judge.complete([{"role": "user", "content": "hi"}]).text == "7 7"
        elapsed = time.monotonic() - started
    assert elapsed < 2.5  # did not wait for the slow reply
    assert judge.stats.failures_by_kind == {"timeout": 1}
    assert len(server.requests) == 2


def test_a_body_that_is_not_a_completion_is_retried():
    with scripted((200, b"<html>gateway</html>", {}, 0.0), (200, {"choices": []}, {}, 0.0), ok("5 5")) as server:
        judge = client(server)
        assert judge.complete([{"role": "user", "content": "hi"}]).text == "5 5"
    assert judge.stats.failures_by_kind == {"bad body": 2}


def test_gives_up_after_the_last_attempt_with_a_clear_error():
    with scripted((503, b"down", {}, 0.0)) as server:
        judge = client(server, max_attempts=3, backoff=0.01)
        with pytest.raises(JudgeError, match=r"failed 3 times; last: HTTP 503: down"):
            judge.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 3


def test_key_goes_only_into_the_header_and_a_refusal_is_not_retried(tmp_path, monkeypatch, caplog, capsys):
    secret = "sk-test-7f3a9c1e5d"
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", secret)
    caplog.set_level(logging.DEBUG)
    with scripted((500, b"oops", {}, 0.0), (429, b"later", {"Retry-After": "0"}, 0.0), ok("8 8"),
                  (401, b'{"detail": "Invalid API key."}', {}, 0.0)) as server:
        judge = client(server, api_key_env="JUDGE_KEY_FOR_TEST", cache_dir=tmp_path / "cache")
        assert judge.complete([{"role": "user", "content": "first"}]).text == "8 8"
        with pytest.raises(JudgeError) as refused:
            judge.complete([{"role": "user", "content": "second"}])
    assert "HTTP 401" in str(refused.value) and "environment variable" in str(refused.value)
    assert len(server.requests) == 4  # the 401 was not retried
    assert all(r["headers"]["Authorization"] == f"Bearer {secret}" for r in server.requests)
    captured = capsys.readouterr()
    cached = "".join(path.read_text() for path in (tmp_path / "cache").rglob("*.json"))
    assert "retrying" in caplog.text  # the retries were logged ...
    for text in (caplog.text, captured.out, captured.err, cached, str(refused.value)):
        assert secret not in text  # ... and the key nowhere


def test_unset_key_variable_is_named_in_a_warning(monkeypatch, caplog):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with scripted(ok("8 8")) as server, caplog.at_level(logging.WARNING):
        client(server, api_key_env="NO_SUCH_JUDGE_KEY").complete([{"role": "user", "content": "x"}])
    assert "NO_SUCH_JUDGE_KEY is not set" in caplog.text
    assert "Authorization" not in server.requests[0]["headers"]


def test_replies_are_cached_by_content_hash(tmp_path):
    with scripted(ok("8 7"), ok("3 4")) as server:
        judge = client(server, cache_dir=tmp_path / "cache")
        first = judge.complete([{"role": "user", "content": "question A"}])
        again = judge.complete([{"role": "user", "content": "question A"}])
        other = judge.complete([{"role": "user", "content": "question B"}])
        fresh = client(server, cache_dir=tmp_path / "cache")  # a later scoring run
        later = fresh.complete([{"role": "user", "content": "question A"}])
    assert (first.text, first.cached) == ("8 7", False)
    assert (again.text, again.cached) == ("8 7", True)
    assert (other.text, other.cached) == ("3 4", False)
    assert (later.text, later.cached, later.served_model) == ("8 7", True, "judge-0613")
    assert len(server.requests) == 2 and fresh.stats.requests == 0
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert 1.0 <= retry_after_seconds(formatdate(time.time() + 3, usegmt=True)) <= 3.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# `llava-lf eval llava-bench score` through a judge that answers by candidate ----------------------------

SCRIPT = {  # candidate answer -> the judge's replies (a second one only when the first is unreadable)
    "cand 0": ["8 6\nfine"], "cand 3": ["10 5"], "cand 1": ["6 6"], "cand 2": ["5 4"],
    "cand 4": ["I prefer the first.", "The first one, clearly."],
}


def by_candidate(body: dict, index: int) -> Reply:
    user = body["messages"][1]["content"]
    candidate = user.split("[Assistant 2]\n", 1)[1].split("\n\n[End of Assistant 2]", 1)[0]
    replies = SCRIPT[candidate]
    return ok(replies[min(len(body["messages"]) // 3, len(replies) - 1)])


def test_llava_bench_score_end_to_end(tmp_path, capsys):
    paths = write_llava_bench(tmp_path / "bench")
    predictions = write_predictions(tmp_path / "bench_predictions.jsonl", {str(i): f"cand {i}" for i in range(5)})
    out = tmp_path / "results"
    argv = ["llava-bench", "score", "--questions", paths["questions"], "--contexts", paths["contexts"],
            "--answers", paths["answers"], "--predictions", predictions, "--out-dir", out,
            "--judge-model", "judge-v1", "--judge-key-env", "", "--judge-backoff", "0.01"]
    with JudgeServer(by_candidate) as server:
        assert run_cli(*argv, "--judge-base-url", server.url) == 0
        first_requests = len(server.requests)
        assert run_cli(*argv, "--judge-base-url", server.url) == 0  # scoring again: all from the cache
    assert first_requests == 6 and len(server.requests) == 6
    result = json.loads((out / "llava_bench_wild.json").read_text())
    assert result["judge_model"] == "judge-v1" and result["judge_served_models"] == ["judge-0613"]
    categories = result["categories"]
    assert categories["conv"]["relative"] == pytest.approx(100 * 5.5 / 9)
    assert categories["complex"]["relative"] == pytest.approx(80.0) and categories["complex"]["unparsable"] == 1
    assert categories["all"]["relative"] == pytest.approx(100 * 5.25 / 7.25)
    assert result["unparsable"] == ["4"] and result["judge_stats"]["cache_hits"] == 6
    table = (out / "llava_bench_wild.md").read_text()
    overall = next(line for line in table.splitlines() if line.startswith("| overall | 5 |"))
    assert "72.4" in overall and "65.4" in overall and "67.9" in overall
    assert "judge: `judge-v1` (served as judge-0613)" in table
    assert "Judge never gave readable scores (1, left out of the means): 4" in table
    reviews = [json.loads(line) for line in (out / "llava_bench_wild_reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == 5 and reviews[4]["replies"] == SCRIPT["cand 4"]
    assert (out / "llava_bench_wild.png").stat().st_size > 1000
    assert "relative score 72.4% (4 scored, 1 unparsable) by judge judge-v1" in capsys.readouterr().out
