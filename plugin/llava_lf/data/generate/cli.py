"""`llava-lf generate`: COCO captions and boxes -> LLaVA instruction data through a text-only teacher."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_lf.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, LlavaLfError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_subcommand(commands) -> None:
    from .tasks import PACKAGED_PROMPTS, TASK_TYPES

    parser = commands.add_parser(
        "generate", help="captions + boxes -> conversations, detailed descriptions, complex reasoning via a teacher",
        description="Ask an OpenAI-compatible chat endpoint to write LLaVA instruction data from COCO annotations. "
                    "Resumable: rerun the same command to finish an interrupted run.")
    parser.add_argument("--captions", type=Path, required=True, help="COCO captions_*.json")
    parser.add_argument("--instances", type=Path, default=None,
                        help="COCO instances_*.json (needed for detail and complex)")
    parser.add_argument("--types", default=",".join(TASK_TYPES), help=f"comma-separated subset of {','.join(TASK_TYPES)}")
    parser.add_argument("--teacher-base-url", required=True, help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    parser.add_argument("--teacher-model", required=True)
    parser.add_argument("--out", type=Path, required=True,
                        help="records JSONL; <stem>.rejected.jsonl and <stem>.report.json are written beside it")
    parser.add_argument("--limit", type=_non_negative_int, default=None, help="first N images by id")
    parser.add_argument("--concurrency", type=_positive_int, default=8, help="requests in flight")
    parser.add_argument("--requests-per-minute", type=float, default=None, help="spacing of all requests, retries too")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request, reading the reply included")
    parser.add_argument("--max-retries", type=_non_negative_int, default=5, help="on 429, 5xx, timeouts, dropped connections")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles; Retry-After wins)")
    parser.add_argument("--max-tokens", type=_positive_int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key (unset: no Authorization header)")
    parser.add_argument("--image-prefix", default="", help="prepended to COCO file names, e.g. coco/train2017/")
    parser.add_argument("--prompts", type=Path, default=PACKAGED_PROMPTS,
                        help="folder of system prompts, few-shot examples and detail instructions (copy the default)")
    parser.add_argument("--shots", type=_non_negative_int, default=None, help="few-shot examples per request (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="picks each image's detail instruction")
    parser.add_argument("--retry-rejected", action="store_true", help="ask again for pairs rejected by an earlier run")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .client import TeacherConfig
    from .runner import GenerateJob, output_paths, run_generation
    from .tasks import parse_task_types

    types = parse_task_types(args.types)
    teacher = TeacherConfig(
        base_url=args.teacher_base_url, model=args.teacher_model, api_key_env=args.api_key_env,
        timeout_s=args.timeout, max_retries=args.max_retries, backoff_s=args.backoff,
        requests_per_minute=args.requests_per_minute, temperature=args.temperature, max_tokens=args.max_tokens)
    job = GenerateJob(
        captions=args.captions, instances=args.instances, types=types, out=args.out, teacher=teacher,
        limit=args.limit, concurrency=args.concurrency, image_prefix=args.image_prefix, prompts_dir=args.prompts,
        shots=args.shots, seed=args.seed, retry_rejected=args.retry_rejected, progress=not args.no_progress)
    report = run_generation(job)
    print(report.summary())
    print(f"  report: {output_paths(args.out)[1]}")
    if report.aborted == "interrupted":
        return EXIT_INTERRUPTED
    if report.aborted:  # a fatal status (a wrong key, model or URL): a setting to fix before rerunning
        raise LlavaLfError(f"stopped: {report.aborted}")
    return EXIT_REJECTED if report.failures else EXIT_OK
