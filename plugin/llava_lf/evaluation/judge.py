"""A judge model behind any OpenAI-compatible `/chat/completions` endpoint.

Retries transport failures and 429/5xx replies with exponential backoff (a server's Retry-After wins),
reads the key from an environment variable and never writes it anywhere, and caches every reply by a
hash of the request so that scoring again costs nothing.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.errors import LlavaLfError

logger = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 600.0  # a server asking for longer than this is treated as down


class JudgeError(LlavaLfError):
    pass


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (the part before /chat/completions)
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's name; its value is never logged
    timeout: float = 120.0  # seconds without a byte from the server before the attempt is abandoned
    max_attempts: int = 6
    backoff: float = 2.0  # first wait; doubles per attempt up to max_backoff
    max_backoff: float = 60.0
    temperature: float = 0.2
    max_tokens: int = 1024
    cache_dir: Path | None = None


@dataclass(frozen=True)
class JudgeReply:
    text: str
    served_model: str  # the model name the server reports (may carry a dated version)
    cached: bool


@dataclass
class JudgeStats:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, kind: str | None = None) -> None:
        with self._lock:  # judge calls may run in a thread pool
            setattr(self, name, getattr(self, name) + 1)
            if kind is not None:
                self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1

    def as_dict(self) -> dict:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": self.retries,
                "failures": self.failures, "failures_by_kind": dict(self.failures_by_kind)}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class JudgeClient:
    def __init__(self, config: JudgeConfig):
        self.config = config
        self.stats = JudgeStats()
        self._key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if config.api_key_env and not self._key:
            logger.warning("judge: environment variable %s is not set; sending no API key", config.api_key_env)
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    def _payload(self, messages: list[dict[str, str]]) -> dict:
        return {"model": self.config.model, "messages": messages,
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def _cache_path(self, payload: dict) -> Path | None:
        if self.config.cache_dir is None:
            return None
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return self.config.cache_dir / digest[:2] / f"{digest}.json"

    def complete(self, messages: list[dict[str, str]]) -> JudgeReply:
        payload = self._payload(messages)
        cache = self._cache_path(payload)
        if cache is not None and cache.is_file():
            entry = json.loads(cache.read_text(encoding="utf-8"))
            self.stats.count("cache_hits")
            return JudgeReply(entry["reply"], entry["served_model"], cached=True)
        text, served = self._post_with_retries(payload)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            entry = {"request": payload, "reply": text, "served_model": served}
            partial.write_text(json.dumps(entry, ensure_ascii=False, indent=1), encoding="utf-8")
            partial.replace(cache)  # atomic: a killed run never leaves a half-written cache entry
        return JudgeReply(text, served, cached=False)

    def _post_with_retries(self, payload: dict) -> tuple[str, str]:
        wait = self.config.backoff
        last_problem = ""
        for attempt in range(1, self.config.max_attempts + 1):
            self.stats.count("requests")
            try:
                return self._post(payload)
            except _Retryable as problem:
                last_problem = str(problem)
                self.stats.count("failures", problem.kind)
                if attempt == self.config.max_attempts:
                    break
                if problem.retry_after is not None:  # the server knows best when it can take us again
                    delay = min(problem.retry_after, MAX_RETRY_AFTER)
                else:
                    delay = min(wait, self.config.max_backoff)
                    wait *= 2
                logger.warning("judge: %s; attempt %d of %d, retrying in %.1fs",
                               last_problem, attempt, self.config.max_attempts, delay)
                self.stats.count("retries")
                time.sleep(delay)
        raise JudgeError(f"judge at {self._url} failed {self.config.max_attempts} times; last: {last_problem}. "
                         "Check that the endpoint is up, or raise --judge-attempts / --judge-timeout")

    def _post(self, payload: dict) -> tuple[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self._url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode(errors="replace")
            if error.code in RETRIED_STATUSES:
                raise _Retryable(f"HTTP {error.code}", f"HTTP {error.code}: {detail}",
                                 retry_after_seconds(error.headers.get("Retry-After"))) from None
            hint = " (is the key's environment variable set and right?)" if error.code in (401, 403) else ""
            raise JudgeError(f"judge at {self._url} refused the request: HTTP {error.code}{hint}: {detail}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as error:
            kind = "timeout" if "timed out" in str(error) or isinstance(error, TimeoutError) else "connection"
            raise _Retryable(kind, f"{kind}: {error}") from None
        try:
            reply = json.loads(body)
            text = reply["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise _Retryable("bad body", f"reply is not a chat completion: {body[:200]!r}") from None
        return text or "", str(reply.get("model") or self.config.model)


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
