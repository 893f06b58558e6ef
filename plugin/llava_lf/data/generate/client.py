"""A teacher client for any OpenAI-compatible `/chat/completions` endpoint, safe to call from many threads.

Stdlib only: one keep-alive `http.client` connection per thread. Retries 429, 5xx, timeouts and dropped
connections with exponential backoff (jittered), honouring Retry-After, which also pauses every other
thread since a rate limit is shared. A requests-per-minute limiter spaces all requests, retries included.
The API key is read from an environment variable when the client is built and only ever sent in the
Authorization header: never printed, logged or written.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from llava_lf.errors import LlavaLfError

RETRY_AFTER_CAP_S = 600.0
FATAL_STATUSES = {401: "the teacher refused the API key", 403: "the API key may not use this model",
                  404: "no such endpoint or model; check --teacher-base-url (it usually ends in /v1) and --teacher-model"}


@dataclass(frozen=True)
class TeacherConfig:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0  # first retry waits about this long, then 2x, 4x, ... up to backoff_cap_s
    backoff_cap_s: float = 60.0
    requests_per_minute: float | None = None
    temperature: float = 0.7
    max_tokens: int = 1024


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int


class TeacherError(LlavaLfError):
    """A request that failed for good; `fatal` ones (bad key, wrong URL) would fail for every request."""

    def __init__(self, reason: str, message: str, attempts: int, fatal: bool = False):
        super().__init__(message)
        self.reason, self.attempts, self.fatal = reason, attempts, fatal


class _Retry(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


class RateLimiter:
    """Spaces request starts evenly at `per_minute`; `pause_until` holds everyone back after a 429."""

    def __init__(self, per_minute: float | None):
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next, self._paused_until)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)

    def pause_until(self, moment: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, moment)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


@dataclass
class ClientStats:
    requests: int = 0
    retries: Counter = field(default_factory=Counter)  # reason -> count


class TeacherClient:
    def __init__(self, config: TeacherConfig):
        parts = urlsplit(config.base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlavaLfError(f"--teacher-base-url {config.base_url!r} must be an http(s) URL, "
                             "e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
        self.config = config
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = f"{parts.path}/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(config.api_key_env, "")
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.limiter = RateLimiter(config.requests_per_minute)
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()

    def __repr__(self) -> str:  # never the headers: they carry the key
        return f"TeacherClient({self.config.base_url!r}, model={self.config.model!r})"

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self.config.timeout_s)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        self._local.served = 0

    def _post(self, body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One exchange; a kept-alive connection the server has since closed is reopened and the request resent."""
        reused = getattr(self._local, "served", 0) > 0
        try:
            return self._exchange(body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
        self._drop_connection()  # idle keep-alive connections are closed by servers after a few seconds
        return self._exchange(body)

    def _exchange(self, body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send and read under a whole-request deadline: each socket wait gets only the time left."""
        deadline = time.monotonic() + self.config.timeout_s
        connection = self._connection()
        connection.request("POST", self._path, body=body, headers=self._headers)
        connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        chunks = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("reply slower than the timeout")
            if connection.sock is not None:
                connection.sock.settimeout(left)
            chunk = response.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
        response.close()  # read1 leaves a fully read response open, and the connection busy
        if response.will_close:
            self._drop_connection()
        else:
            self._local.served = getattr(self._local, "served", 0) + 1
        return response.status, response.headers, b"".join(chunks)

    def _attempt(self, body: bytes, attempts: int) -> Completion:
        try:
            status, headers, payload = self._post(body)
        except TimeoutError:  # socket.timeout is an alias of it
            self._drop_connection()
            raise _Retry("timeout", f"no complete reply within {self.config.timeout_s:g} s") from None
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            self._drop_connection()
            raise _Retry("connection", f"connection failed: {type(error).__name__}") from None
        if status == 429 or status >= 500:
            raise _Retry(f"http_{status}", f"HTTP {status}", parse_retry_after(headers.get("Retry-After")))
        if status in FATAL_STATUSES:
            raise TeacherError(f"http_{status}", f"HTTP {status}: {FATAL_STATUSES[status]}", attempts, fatal=True)
        if status != 200:
            snippet = payload[:300].decode("utf-8", "replace")
            raise TeacherError(f"http_{status}", f"HTTP {status}: {snippet}", attempts)
        return _completion(payload, attempts)

    def _backoff(self, retry: int) -> float:
        ceiling = min(self.config.backoff_cap_s, self.config.backoff_s * 2 ** retry)
        return ceiling * random.uniform(0.5, 1.0)

    def complete(self, messages: list[dict]) -> Completion:
        """One chat completion, retried as configured; raises TeacherError when it fails for good."""
        body = json.dumps({"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                           "max_tokens": self.config.max_tokens}).encode("utf-8")
        retry = 0
        while True:
            self.limiter.acquire()
            with self._stats_lock:
                self.stats.requests += 1
            try:
                return self._attempt(body, retry + 1)
            except _Retry as failure:
                if retry == self.config.max_retries:
                    raise TeacherError(failure.reason, f"{failure} (gave up after {retry + 1} attempts)",
                                       retry + 1) from None
                with self._stats_lock:
                    self.stats.retries[failure.reason] += 1
                if failure.retry_after is not None:  # the limiter holds this thread and all others back
                    self.limiter.pause_until(time.monotonic() + failure.retry_after)
                else:
                    time.sleep(self._backoff(retry))
                retry += 1


def _completion(payload: bytes, attempts: int) -> Completion:
    try:
        reply = json.loads(payload)
        choice = reply["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise TeacherError("bad_response", f"HTTP 200 but not a chat completion ({type(error).__name__}: {error}); "
                           "is --teacher-base-url an OpenAI-compatible /v1 endpoint?", attempts) from None
    usage = reply.get("usage") or {}
    return Completion(text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0), attempts)
