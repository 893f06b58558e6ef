"""The judge: the shared OpenAI-compatible client set up for scoring, and the `--judge-*` options of the
benchmarks that use one. Replies are cached on disk, so scoring again costs nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from llava_lf.common.openai_client import ClientConfig, OpenAIClient, OptionNames

T = TypeVar("T")
R = TypeVar("R")

JUDGE_OPTIONS = OptionNames(base_url="--judge-base-url", model="--judge-model", api_key_env="--judge-key-env",
                            retries="--judge-attempts", timeout="--judge-timeout")


@dataclass(frozen=True)
class JudgeConfig(ClientConfig):
    """The shared client's settings with the judge's defaults: few, slow calls, so each retry is logged, and a
    200 that is not a completion is retried as a gateway's glitch."""
    max_retries: int = 5  # --judge-attempts 6
    backoff_s: float = 2.0
    temperature: float = 0.2
    retry_bad_response: bool = True
    log_retries: bool = True
    label: str = "judge"
    options: OptionNames = JUDGE_OPTIONS


class JudgeClient(OpenAIClient):
    """The shared client, set up by a `JudgeConfig`."""

    config: JudgeConfig


def add_judge_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    judge = parser.add_argument_group("judge (any OpenAI-compatible endpoint)")
    judge.add_argument("--judge-base-url", required=required,
                       help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    judge.add_argument("--judge-model", required=required, help="recorded in the results: scores depend on it")
    judge.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="name of the variable holding the key")
    judge.add_argument("--judge-timeout", type=float, default=120.0)
    judge.add_argument("--judge-attempts", type=int, default=6)
    judge.add_argument("--judge-backoff", type=float, default=2.0, help="first wait between attempts, doubling")
    judge.add_argument("--judge-max-tokens", type=int, default=1024)
    judge.add_argument("--judge-temperature", type=float, default=0.2)
    judge.add_argument("--judge-workers", type=int, default=4)
    judge.add_argument("--judge-cache", type=Path, default=None, help="reply cache (default: OUT_DIR/judge_cache)")


def judge_client(args: argparse.Namespace) -> JudgeClient:
    return JudgeClient(JudgeConfig(
        base_url=args.judge_base_url, model=args.judge_model, api_key_env=args.judge_key_env or None,
        timeout_s=args.judge_timeout, max_retries=max(args.judge_attempts, 1) - 1, backoff_s=args.judge_backoff,
        temperature=args.judge_temperature, max_tokens=args.judge_max_tokens,
        cache_dir=args.judge_cache or args.out_dir / "judge_cache"))


def ask_all(ask: Callable[[T], R], items: Sequence[T], workers: int, desc: str) -> list[R]:
    """`ask(item)` for every item, in a small thread pool (the judge is remote and slow); results in item order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(ask, item) for item in items]
        return [future.result() for future in tqdm(futures, desc=desc, unit="question")]


def write_reviews(path: Path, items: list) -> None:
    """The judge's review of each answer (dataclasses), one JSON line each, beside the results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(item), ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
