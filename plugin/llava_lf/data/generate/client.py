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
class TeacherConfig(ClientConfig):
    """The shared client's settings, named as `generate` spells them. The shared defaults suit the teacher: a
    non-completion 200 is not retried (a wrong URL answers every request that way), and retries are not
    logged (the progress bar and the report count them)."""
    label: str = "teacher"
    options: OptionNames = TEACHER_OPTIONS


class TeacherClient(OpenAIClient):
    """The shared client, set up by a `TeacherConfig`."""

    config: TeacherConfig
