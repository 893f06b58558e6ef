"""The judge: the shared OpenAI-compatible client (`llava_lf.common.openai_client`) set up for scoring.

Its replies are cached on disk by a hash of the request, so scoring again costs nothing; a 200 that is
not a completion is retried (a gateway's glitch), and each retry is logged (judge calls are few and slow).
Retries, Retry-After, redirect refusal and key redaction are the shared client's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_lf.common.openai_client import (
    ChatReply,
    ClientConfig,
    ClientError,
    ClientStats,
    OpenAIClient,
    OptionNames,
    parse_retry_after,
)

JudgeError = ClientError
JudgeReply = ChatReply  # .text, .served_model, .cached
JudgeStats = ClientStats  # .requests, .cache_hits, .as_dict()
retry_after_seconds = parse_retry_after

JUDGE_OPTIONS = OptionNames(base_url="--judge-base-url", model="--judge-model", api_key_env="--judge-key-env",
                            retries="--judge-attempts", timeout="--judge-timeout")


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (the part before /chat/completions)
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's name; its value is never logged
    timeout: float = 120.0  # seconds: each wait on the server, and the whole reply
    max_attempts: int = 6
    backoff: float = 2.0  # first wait (jittered); doubles per attempt up to max_backoff
    max_backoff: float = 60.0
    temperature: float = 0.2
    max_tokens: int = 1024
    cache_dir: Path | None = None


class JudgeClient(OpenAIClient):
    def __init__(self, config: JudgeConfig):
        super().__init__(ClientConfig(
            base_url=config.base_url, model=config.model, api_key_env=config.api_key_env or None,
            timeout_s=config.timeout, max_retries=max(config.max_attempts, 1) - 1, backoff_s=config.backoff,
            backoff_cap_s=config.max_backoff, temperature=config.temperature, max_tokens=config.max_tokens,
            cache_dir=config.cache_dir, retry_bad_response=True, log_retries=True, label="judge",
            options=JUDGE_OPTIONS))
        self.judge_config = config
