"""The teacher: the shared OpenAI-compatible client (`llava_lf.common.openai_client`) set up for `generate`.

Only the settings and their option names live here; retries, rate limiting, Retry-After, redirect
refusal and key redaction are the shared client's.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_lf.common.openai_client import ChatReply, ClientConfig, OpenAIClient, OptionNames

Completion = ChatReply  # text, finish_reason, prompt/completion tokens, attempts

TEACHER_OPTIONS = OptionNames(base_url="--teacher-base-url", model="--teacher-model", api_key_env="--api-key-env",
                              retries="--max-retries", timeout="--timeout")


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


class TeacherClient(OpenAIClient):
    """A non-completion 200 is not retried (a wrong URL answers every request that way); retries are not logged
    (the progress bar and the report count them)."""

    def __init__(self, config: TeacherConfig):
        super().__init__(ClientConfig(
            base_url=config.base_url, model=config.model, api_key_env=config.api_key_env or None,
            timeout_s=config.timeout_s, max_retries=config.max_retries, backoff_s=config.backoff_s,
            backoff_cap_s=config.backoff_cap_s, requests_per_minute=config.requests_per_minute,
            temperature=config.temperature, max_tokens=config.max_tokens, label="teacher", options=TEACHER_OPTIONS))
