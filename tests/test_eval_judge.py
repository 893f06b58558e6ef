"""The judge client against real HTTP servers on loopback with scripted replies: malformed scores,
429 with Retry-After (seconds and HTTP date), 500, a reply slower than the timeout, refusals, redirects
to another origin, servers that echo the key; replies are cached by content. Then `llava-lf eval
llava-bench score` end to end against the same kind of server."""

from __future__ import annotations

import json
import logging
import threading
import time
from email.utils import formatdate

import pytest
from helpers.fake_openai import FakeOpenAI, Reply, ok, status
from test_eval_data import run_cli, write_llava_bench, write_predictions

from llava_lf.common.openai_client import ClientConfig, OpenAIClient
from llava_lf.common.openai_client import ClientError as JudgeError
from llava_lf.common.openai_client import parse_retry_after as retry_after_seconds
from llava_lf.evaluation.judge import JudgeClient, JudgeConfig
from llava_lf.evaluation.tasks import llava_bench

pytestmark = pytest.mark.timeout(60)


def scripted(*replies: Reply) -> FakeOpenAI:
    return FakeOpenAI(replies, served_model="judge-0613")


def client(server: FakeOpenAI, **overrides) -> JudgeClient:
    settings = {"base_url": server.url, "model": "judge", "api_key_env": None, "timeout_s": 5.0, "max_retries": 3,
                "backoff_s": 0.05} | overrides
    return JudgeClient(JudgeConfig(**settings))


ITEM = llava_bench.BenchQuestion("7", "001.jpg", "What colour is the ball?", "conv", "A red ball.", False, "It is red.")
HI = [{"role": "user", "content": "hi"}]


def test_malformed_scores_are_asked_again_then_counted_unparsable():
    with scripted(ok("Score: 8 out of 10"), ok("8 7\nAssistant 1 is exact."), ok("Both are fine."), ok("11 12")) as server:
        judge = client(server)
        good = llava_bench.judge_one(judge, ITEM, "Red.", reasks=1)
        bad = llava_bench.judge_one(judge, ITEM, "Blue.", reasks=1)
    assert good.scores == (8.0, 7.0) and good.replies == ("Score: 8 out of 10", "8 7\nAssistant 1 is exact.")
    assert bad.scores is None and bad.replies == ("Both are fine.", "11 12")
    reask = server.seen[1].body["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"] == "Score: 8 out of 10" and reask[3]["content"] == llava_bench.REASK
    assert good.served_model == "judge-0613"
    assert server.seen[0].path == "/v1/chat/completions"


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_waits_as_long_as_retry_after_says(form):
    # An HTTP date has one-second resolution: two seconds ahead waits between one and two.
    value = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
    with scripted(status(429, b'{"error": "slow down"}', Retry_After=value), ok("9 8")) as server:
        judge = client(server, backoff_s=0.01)
        reply = judge.complete(HI)
    assert reply.text == "9 8" and not reply.cached
    gap = server.seen[1].at - server.seen[0].at
    assert 0.95 <= gap <= 2.5  # Retry-After, not the 0.01 s backoff
    assert judge.stats.as_dict() == {"requests": 2, "cache_hits": 0, "retries": 1, "failures": 1,
                                     "failures_by_kind": {"http_429": 1}}


def test_retry_after_pauses_every_thread():
    """One thread's 429 holds back the requests other threads start while the pause lasts."""
    with FakeOpenAI([status(429, Retry_After="1"), ok("fine")]) as server:
        shared = OpenAIClient(ClientConfig(server.url, "judge", api_key_env=None, backoff_s=0.01))
        first = threading.Thread(target=shared.complete, args=(HI,))
        first.start()
        while not server.seen:
            time.sleep(0.01)
        time.sleep(0.2)  # the 429 is in; now three more threads ask
        others = [threading.Thread(target=shared.complete, args=(HI,)) for _ in range(3)]
        for thread in [*others]:
            thread.start()
        for thread in [first, *others]:
            thread.join()
    refused_at = server.seen[0].at
    assert len(server.seen) == 5 and all(seen.at - refused_at >= 0.95 for seen in server.seen[1:])


def test_requests_per_minute_holds_across_threads():
    with FakeOpenAI([ok("fine")]) as server:
        shared = OpenAIClient(ClientConfig(server.url, "judge", api_key_env=None, requests_per_minute=1200))
        threads = [threading.Thread(target=shared.complete, args=(HI,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    starts = sorted(seen.at for seen in server.seen)
    assert len(starts) == 8
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.05 - 0.015  # 50 ms apart, 8 threads


def test_500_is_retried_with_growing_backoff():
    with scripted(status(500, b"internal error"), status(502, b"bad gateway"), ok("6 5")) as server:
        judge = client(server, backoff_s=0.4)
        assert judge.complete(HI).text == "6 5"
    times = [seen.at for seen in server.seen]
    # Jittered in [half, whole] of 0.4 s, then of 0.8 s.
    assert 0.19 <= times[1] - times[0] <= 0.6 and 0.39 <= times[2] - times[1] <= 1.0
    assert judge.stats.failed_attempts == {"http_500": 1, "http_502": 1}


def test_a_reply_slower_than_the_timeout_is_abandoned_and_retried():
    with scripted(ok("1 1", delay_s=3.0), ok("7 7")) as server:
        judge = client(server, timeout_s=0.5)
        started = time.monotonic()
        assert judge.complete(HI).text == "7 7"
        elapsed = time.monotonic() - started
    assert elapsed < 2.5  # did not wait for the slow reply
    assert judge.stats.failed_attempts == {"timeout": 1}
    assert len(server.seen) == 2


def test_a_body_that_is_not_a_completion_is_retried():
    with scripted(Reply(raw=b"<html>gateway</html>"), Reply(raw=b'{"choices": []}'), ok("5 5")) as server:
        judge = client(server)
        assert judge.complete(HI).text == "5 5"
    assert judge.stats.failed_attempts == {"bad_response": 2}


def test_gives_up_after_the_last_attempt_with_a_clear_error():
    with scripted(status(503, b"down")) as server:
        judge = client(server, max_retries=2, backoff_s=0.01)
        with pytest.raises(JudgeError, match=r"HTTP 503: down \(gave up after 3 attempts\).*--judge-attempts"):
            judge.complete(HI)
    assert len(server.seen) == 3


def test_key_goes_only_into_the_header_and_a_refusal_is_not_retried(tmp_path, monkeypatch, caplog, capsys):
    secret = "sk-test-7f3a9c1e5d"
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", secret)
    caplog.set_level(logging.DEBUG)
    with scripted(status(500, b"oops"), status(429, b"later", Retry_After="0"), ok("8 8"),
                  status(401, b'{"detail": "Invalid API key."}')) as server:
        judge = client(server, api_key_env="JUDGE_KEY_FOR_TEST", cache_dir=tmp_path / "cache")
        assert judge.complete([{"role": "user", "content": "first"}]).text == "8 8"
        with pytest.raises(JudgeError) as refused:
            judge.complete([{"role": "user", "content": "second"}])
    assert "HTTP 401" in str(refused.value) and "environment variable JUDGE_KEY_FOR_TEST" in str(refused.value)
    assert "--judge-key-env" in str(refused.value) and refused.value.fatal
    assert len(server.seen) == 4  # the 401 was not retried
    assert all(seen.authorization == f"Bearer {secret}" for seen in server.seen)
    captured = capsys.readouterr()
    cached = "".join(path.read_text() for path in (tmp_path / "cache").rglob("*.json"))
    assert "retrying" in caplog.text  # the retries were logged ...
    for text in (caplog.text, captured.out, captured.err, cached, str(refused.value), repr(judge)):
        assert secret not in text  # ... and the key nowhere


def test_a_server_echoing_the_key_leaves_it_nowhere(tmp_path, monkeypatch, caplog):
    """Error bodies, replies and the cache all pass through the redactor: the key becomes ***."""
    secret = "sk-echo-4b9d2e7a1c"
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", secret)
    caplog.set_level(logging.DEBUG)
    echo = f'{{"error": "bad request from Bearer {secret}", "padding": "{"x" * 280}{secret}"}}'.encode()
    with scripted(status(500, echo), ok(f"8 8 (you sent {secret})"), status(400, echo)) as server:
        judge = client(server, api_key_env="JUDGE_KEY_FOR_TEST", cache_dir=tmp_path / "cache")
        reply = judge.complete(HI)
        with pytest.raises(JudgeError) as refused:
            judge.complete([{"role": "user", "content": "again"}])
    assert reply.text == "8 8 (you sent ***)"
    assert "Bearer ***" in str(refused.value)
    cached = "".join(path.read_text() for path in (tmp_path / "cache").rglob("*.json"))
    assert "you sent ***" in cached
    for text in (caplog.text, cached, str(refused.value), repr(refused.value)):
        assert secret[:6] not in text  # redacted before cut: not even a prefix of the key survives


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_to_another_origin_never_gets_the_key(monkeypatch, code):
    secret = "sk-redirect-0c8e5f"
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", secret)
    with FakeOpenAI() as elsewhere, \
            scripted(status(code, Location=f"{elsewhere.url}/chat/completions")) as server:
        judge = client(server, api_key_env="JUDGE_KEY_FOR_TEST")
        with pytest.raises(JudgeError) as refused:
            judge.complete(HI)
    assert elsewhere.seen == []  # not followed at all, so neither the key nor the prompt went there
    assert len(server.seen) == 1 and refused.value.fatal  # and not retried
    message = str(refused.value)
    assert f"HTTP {code}" in message and f"redirect to {elsewhere.origin}" in message and "--judge-base-url" in message


def test_unset_key_variable_is_named_in_a_warning(monkeypatch, caplog):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with scripted(ok("8 8")) as server, caplog.at_level(logging.WARNING):
        client(server, api_key_env="NO_SUCH_JUDGE_KEY").complete([{"role": "user", "content": "x"}])
    assert "NO_SUCH_JUDGE_KEY is not set" in caplog.text
    assert "Authorization" not in server.seen[0].headers


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
    assert len(server.seen) == 2 and fresh.stats.requests == 0
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    next((tmp_path / "cache").rglob("*.json")).write_text("{torn")  # a damaged entry is a miss, not a crash
    with scripted(ok("8 7")) as server:
        client(server, cache_dir=tmp_path / "cache").complete([{"role": "user", "content": "question A"}])
        client(server, cache_dir=tmp_path / "cache").complete([{"role": "user", "content": "question B"}])
    assert len(server.seen) == 1


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert 1.0 <= retry_after_seconds(formatdate(time.time() + 3, usegmt=True)) <= 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now
    assert retry_after_seconds("86400") == 600.0  # capped
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("nan") is None


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
    with FakeOpenAI(respond=by_candidate, served_model="judge-0613") as server:
        assert run_cli(*argv, "--judge-base-url", server.url) == 0
        first_requests = len(server.seen)
        assert run_cli(*argv, "--judge-base-url", server.url) == 0  # scoring again: all from the cache
    assert first_requests == 6 and len(server.seen) == 6
    result = json.loads((out / "llava_bench_wild.json").read_text())
    assert result["judge_model"] == "judge-v1" and result["judge_served_models"] == ["judge-0613"]
    categories = result["categories"]
    assert categories["conv"]["relative"] == pytest.approx(100 * 5.5 / 9, abs=0.05)  # rounded as published
    assert categories["complex"]["relative"] == pytest.approx(80.0) and categories["complex"]["unparsable"] == 1
    assert categories["all"]["relative"] == pytest.approx(100 * 5.25 / 7.25, abs=0.05)
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
