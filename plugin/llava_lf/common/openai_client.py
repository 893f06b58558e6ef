"""One client for OpenAI-compatible `/chat/completions` endpoints, the teacher of `generate` and the judge of
`eval`: a shared rate limit, retries, no redirects, the key redacted everywhere, a reply cache (docs/generate.md).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import urljoin, urlsplit

import httpx

from llava_lf.errors import LlavaLfError

from .reply_cache import ReplyCache

logger = logging.getLogger(__name__)

REDACTED = "***"
RETRY_AFTER_CAP_S = 600.0  # a server asking for longer is treated as asking for this long
RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx
MAX_REPLY_BYTES = 32 << 20  # a reply larger than this is a broken or hostile server, not a completion
SNIPPET_CHARS = 300  # of an error body, quoted in the message
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token may hold


@dataclass(frozen=True)
class OptionNames:
    """How the caller's CLI spells each setting, so a message can name the option to change."""

    base_url: str = "base_url"
    model: str = "model"
    api_key_env: str = "api_key_env"
    retries: str = "max_retries"
    timeout: str = "timeout"


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # the part before /chat/completions, e.g. https://api.openai.com/v1
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's name; None or unset: no Authorization header
    timeout_s: float = 120.0  # per wait on the server; the whole reply must also arrive within it
    max_retries: int = 5  # after the first attempt
    backoff_s: float = 1.0  # the first retry waits up to this long, then 2x, 4x, ... up to backoff_cap_s
    backoff_cap_s: float = 60.0
    requests_per_minute: float | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    cache_dir: Path | None = None  # replies cached by request hash (the judge); None: no cache
    retry_bad_response: bool = False  # a 200 that is not a completion: retried (gateway glitch) or failed
    log_retries: bool = False  # each retry as a warning (few, slow calls) or at debug level (many threads)
    label: str = "endpoint"  # "teacher", "judge": how messages name the server
    options: OptionNames = field(default_factory=OptionNames)


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    served_model: str  # the model name the server reports (may carry a dated version)
    attempts: int
    cached: bool = False


class ClientError(LlavaLfError):
    """A request that failed for good; `fatal` ones (bad key, wrong URL, a redirect) would fail for every request."""

    def __init__(self, reason: str, message: str, attempts: int, fatal: bool = False):
        super().__init__(message)
        self.reason, self.attempts, self.fatal = reason, attempts, fatal


class _Retry(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


class RateLimiter:
    """Spaces request starts evenly at `per_minute`; `pause_until` holds everyone back after a Retry-After."""

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


def parse_retry_after(value: str | None, cap_s: float = RETRY_AFTER_CAP_S) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value.strip()).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap_s)


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent, retries included
    cache_hits: int = 0
    retries: Counter = field(default_factory=Counter)  # reason -> retries
    failed_attempts: Counter = field(default_factory=Counter)  # reason -> attempts that failed (retried or not)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, reason: str | None = None) -> None:
        with self._lock:
            if reason is None:
                setattr(self, name, getattr(self, name) + 1)
            else:
                getattr(self, name)[reason] += 1

    def as_dict(self) -> dict:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": sum(self.retries.values()),
                "failures": sum(self.failed_attempts.values()), "failures_by_kind": dict(self.failed_attempts)}


def _redirect_origin(url: str, location: str | None) -> str:
    """scheme://host[:port] a redirect points to (never its path, query or user info, which may carry secrets)."""
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urlsplit(urljoin(url, location))
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "an unreadable Location"


class OpenAIClient:
    """Thread-safe: many threads may call `complete` at once; they share connections, limiter and stats."""

    def __init__(self, config: ClientConfig):
        self.config = config
        names = config.options
        parts = urlsplit(config.base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlavaLfError(f"{names.base_url} {config.base_url!r} must be an http(s) URL, "
                               "e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
        self.url = config.base_url.strip().rstrip("/") + "/chat/completions"
        # Messages name the endpoint without user info or query, which may hold credentials of their own.
        self.shown_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}/chat/completions"
        self._key = self._read_key()
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        # Environment proxies only for https: an http proxy would read the key; a CONNECT tunnel cannot.
        self._http = httpx.Client(headers=headers, follow_redirects=False, trust_env=parts.scheme == "https",
                                  timeout=httpx.Timeout(config.timeout_s),
                                  limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        self.limiter = RateLimiter(config.requests_per_minute)
        self.stats = ClientStats()
        self.cache = ReplyCache(config.cache_dir, self.redact) if config.cache_dir is not None else None

    def _read_key(self) -> str | None:
        name = self.config.api_key_env
        if not name:
            return None
        key = os.environ.get(name, "").strip()
        if not key:
            logger.warning("%s: environment variable %s is not set; sending no API key", self.config.label, name)
            return None
        if not _HEADER_SAFE.fullmatch(key):  # httpx would quote the bad header, key and all, in its error
            raise LlavaLfError(f"environment variable {name} (named by {self.config.options.api_key_env}) holds "
                               "characters an API key cannot have (spaces, control or non-ASCII characters); "
                               "set it to the key alone")
        return key

    def __repr__(self) -> str:  # never the headers: they carry the key
        return f"{type(self).__name__}({self.shown_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """`text` with the API key (raw or JSON-escaped) replaced by ***."""
        if self._key:
            text = text.replace(self._key, REDACTED)
            escaped = json.dumps(self._key)[1:-1]
            if escaped != self._key:
                text = text.replace(escaped, REDACTED)
        return text

    def payload(self, messages: list[dict]) -> dict:
        return {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens}

    def complete(self, messages: list[dict], temperature: float | None = None,
                 cache_tag: dict | None = None) -> ChatReply:
        """One chat completion (from the cache when there is one), retried as configured; raises ClientError.
        `temperature` overrides the configured one for this request; `cache_tag` joins the cache key only, so
        repeated runs of the same request (a grader's N runs) are N real requests, each cached."""
        payload = self.payload(messages)
        if temperature is not None:
            payload["temperature"] = temperature
        key = payload if cache_tag is None else payload | cache_tag
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                self.stats.count("cache_hits")
                return ChatReply(entry["reply"], entry.get("finish_reason"), 0, 0,
                                 str(entry.get("served_model") or self.config.model), 0, cached=True)
        reply = self._with_retries(json.dumps(payload).encode("utf-8"))
        if self.cache is not None:
            self.cache.put(key, {"request": payload, "reply": reply.text, "served_model": reply.served_model,
                                 "finish_reason": reply.finish_reason})
        return reply

    def _with_retries(self, body: bytes) -> ChatReply:
        retry = 0
        while True:
            self.limiter.acquire()
            self.stats.count("requests")
            try:
                return self._attempt(body, retry + 1)
            except ClientError as error:
                self.stats.count("failed_attempts", error.reason)
                raise
            except _Retry as failure:
                self.stats.count("failed_attempts", failure.reason)
                if retry >= self.config.max_retries:
                    names = self.config.options
                    raise ClientError(failure.reason, self.redact(
                        f"{self.config.label} at {self.shown_url}: {failure} (gave up after {retry + 1} attempts); "
                        f"check that the endpoint is up, or raise {names.retries} / {names.timeout}"),
                        retry + 1) from None
                self.stats.count("retries", failure.reason)
                if failure.retry_after is not None:  # the limiter holds this thread and all others back
                    delay = failure.retry_after
                    self.limiter.pause_until(time.monotonic() + delay)
                else:
                    delay = min(self.config.backoff_cap_s, self.config.backoff_s * 2 ** retry) * random.uniform(0.5, 1)
                logger.log(logging.WARNING if self.config.log_retries else logging.DEBUG,
                           "%s: %s; attempt %d of %d, retrying in %.1fs", self.config.label, self.redact(str(failure)),
                           retry + 1, self.config.max_retries + 1, delay)
                if failure.retry_after is None:
                    time.sleep(delay)
                retry += 1

    def _attempt(self, body: bytes, attempts: int) -> ChatReply:
        try:
            status, headers, payload = self._post(body)
        except (httpx.TimeoutException, TimeoutError):
            raise _Retry("timeout", f"no complete reply within {self.config.timeout_s:g} s") from None
        except (httpx.TransportError, OSError) as error:  # refused, reset, dropped mid-reply
            raise _Retry("connection", f"connection failed: {type(error).__name__}") from None
        if 300 <= status < 400:
            where = _redirect_origin(self.url, headers.get("Location"))
            raise ClientError(f"http_{status}", self.redact(
                f"{self.config.label} at {self.shown_url} answered HTTP {status}, a redirect to {where}; redirects are "
                f"not followed (the API key must not go anywhere else): set {self.config.options.base_url} to the "
                "endpoint itself"), attempts, fatal=True)
        if status in RETRIED_STATUSES or status >= 500:
            raise _Retry(f"http_{status}", f"HTTP {status}: {self._snippet(payload)}",
                         parse_retry_after(headers.get("Retry-After")))
        if status in (401, 403, 404):
            raise ClientError(f"http_{status}", self.redact(self._fatal_message(status, payload)), attempts, fatal=True)
        if status != 200:
            raise ClientError(f"http_{status}", self.redact(f"{self.config.label} at {self.shown_url} refused the request: "
                                                            f"HTTP {status}: {self._snippet(payload)}"), attempts)
        try:
            return self._parse(payload, attempts)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as error:
            problem = (f"HTTP 200 but not a chat completion ({type(error).__name__}); is {self.config.options.base_url} "
                       f"an OpenAI-compatible /v1 endpoint? The reply began: {self._snippet(payload, 120)}")
            if self.config.retry_bad_response:
                raise _Retry("bad_response", problem) from None
            raise ClientError("bad_response", self.redact(f"{self.config.label} at {self.shown_url}: {problem}"),
                              attempts) from None

    def _fatal_message(self, status: int, payload: bytes) -> str:
        names, label = self.config.options, self.config.label
        fix = {401: f"the {label} refused the API key: check the environment variable "
                    f"{self.config.api_key_env or '(none)'} (named by {names.api_key_env})",
               403: f"the API key may not use this model: check {names.model} and the key's permissions",
               404: f"no such endpoint or model: check {names.base_url} (it usually ends in /v1) and {names.model}"}
        return f"{label} at {self.shown_url}: HTTP {status}: {fix[status]}. The server said: {self._snippet(payload)}"

    def _snippet(self, payload: bytes, chars: int = SNIPPET_CHARS) -> str:
        """The start of a body for a message: redacted before it is cut, so no prefix of the key survives."""
        text = " ".join(self.redact(payload.decode("utf-8", "replace")).split())
        return (text[:chars] + "...") if len(text) > chars else (text or "(empty body)")

    def _post(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        """One exchange; a kept-alive connection the server closed just as we reused it is retried once, at once."""
        try:
            return self._exchange(body)
        except httpx.RemoteProtocolError:  # "server disconnected without sending a response"
            return self._exchange(body)

    def _exchange(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        """Send and read under a whole-reply deadline (httpx's timeout bounds each wait, not their sum)."""
        deadline = time.monotonic() + self.config.timeout_s
        request = self._http.build_request("POST", self.url, content=body,
                                           headers={"Content-Type": "application/json"})
        response = self._http.send(request, stream=True)
        try:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError("reply slower than the timeout")
                if size > MAX_REPLY_BYTES:
                    raise httpx.ReadError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            return response.status_code, response.headers, b"".join(chunks)
        finally:
            response.close()  # back to the pool when read to the end; dropped when abandoned midway

    def _parse(self, payload: bytes, attempts: int) -> ChatReply:
        reply = json.loads(payload)
        choice = reply["choices"][0]
        text = choice["message"]["content"]
        if text is None:  # a refusal or a content filter: an empty answer, for the caller to judge
            text = ""
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = reply.get("usage") or {}
        return ChatReply(self.redact(text), choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
                         int(usage.get("completion_tokens") or 0), str(reply.get("model") or self.config.model),
                         attempts)
