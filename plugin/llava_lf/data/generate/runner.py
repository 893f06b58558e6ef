"""Drive a generation run: pick the unfinished (image, type) pairs, ask the teacher, write results as they come.

Teacher calls run on `concurrency` threads; only this module's main loop touches the output files, so
each result is one append. Replies that do not parse are rejected into `<out>.rejected.jsonl` and count
as finished (asking again costs money; `retry_rejected` overrides that). Requests that fail for good
are only reported: a rerun asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.common.jsonl import JsonlAppender
from llava_lf.common.openai_client import ClientError
from llava_lf.errors import LlavaLfError

from .client import Completion, TeacherClient, TeacherConfig
from .coco import ImageContext, load_contexts
from .parse import ReplyRejected, parse_reply
from .records import GeneratedRecord, RejectedRow, build_record, record_id, rejected_row
from .report import Failure, GenerationReport
from .tasks import PACKAGED_PROMPTS, PromptSet, TaskType, build_messages, detail_instruction, load_prompts


@dataclass(frozen=True)
class GenerateJob:
    captions: Path
    instances: Path | None
    types: list[TaskType]
    out: Path
    teacher: TeacherConfig
    limit: int | None = None  # images, in id order
    concurrency: int = 8
    image_prefix: str = ""
    prompts_dir: Path = PACKAGED_PROMPTS
    shots: int | None = None  # few-shot examples per request; None: all in the prompt folder
    seed: int = 0
    retry_rejected: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Outcome:
    id: str
    task: TaskType
    completion: Completion | None = None
    record: GeneratedRecord | None = None
    rejection: RejectedRow | None = None
    failure: Failure | None = None
    fatal: bool = False


@dataclass
class _Work:
    job: GenerateJob
    prompts: PromptSet
    client: TeacherClient
    stop: threading.Event = field(default_factory=threading.Event)  # set by the first fatal error

    def run_one(self, context: ImageContext, task: TaskType) -> Outcome:
        """Runs on a worker thread: one teacher call and its parse; no file access."""
        pair_id = record_id(context.image_id, task)
        if self.stop.is_set():
            return Outcome(pair_id, task)  # left unfinished: the run is stopping
        try:
            completion = self.client.complete(build_messages(self.prompts, task, context, self.job.shots))
        except ClientError as error:  # .reason, .attempts, .fatal (a wrong key, model or URL: stop the run)
            if error.fatal:
                self.stop.set()
            return Outcome(pair_id, task, failure=Failure(pair_id, error.reason, str(error), error.attempts),
                           fatal=error.fatal)
        try:
            parsed = parse_reply(task, completion.text, completion.finish_reason)
        except ReplyRejected as rejected:
            row = rejected_row(context, task, self.job.image_prefix, rejected.reason, rejected.detail, completion.text)
            return Outcome(pair_id, task, completion, rejection=row)
        instruction = detail_instruction(self.prompts, context.image_id, self.job.seed) if task == "detail" else None
        return Outcome(pair_id, task, completion,
                       record=build_record(context, task, parsed, self.job.image_prefix, instruction))


def output_paths(out: Path) -> tuple[Path, Path]:
    """`gen.jsonl` -> (`gen.rejected.jsonl`, `gen.report.json`)."""
    stem = out.name.removesuffix(".jsonl")
    return out.with_name(f"{stem}.rejected.jsonl"), out.with_name(f"{stem}.report.json")


def _check_job(job: GenerateJob) -> None:
    problems = []
    if job.out.suffix != ".jsonl":
        problems.append(f"--out {job.out} must end in .jsonl (records are appended one a line as they arrive)")
    if job.instances is None and any(task != "conversation" for task in job.types):
        problems.append("--instances is needed for the detail and complex types (they are given the boxes)")
    if job.concurrency < 1:
        problems.append(f"--concurrency must be at least 1, got {job.concurrency}")
    if job.limit is not None and job.limit < 0:
        problems.append(f"--limit must be positive, got {job.limit}")
    if problems:
        raise LlavaLfError("; ".join(problems))


def _bounded_submit(pool: ThreadPoolExecutor, work: _Work, pending_pairs: Iterator, in_flight: set[Future],
                    depth: int) -> None:
    while len(in_flight) < depth:
        item = next(pending_pairs, None)
        if item is None:
            return
        in_flight.add(pool.submit(work.run_one, *item))


def _record_outcome(outcome: Outcome, report: GenerationReport, records: JsonlAppender,
                    rejects: JsonlAppender) -> None:
    if outcome.completion is not None:
        report.prompt_tokens += outcome.completion.prompt_tokens
        report.completion_tokens += outcome.completion.completion_tokens
    if outcome.record is not None:
        records.append(outcome.record)
        report.written[outcome.task] += 1
    elif outcome.rejection is not None:
        rejects.append(outcome.rejection)
        report.rejected[outcome.rejection["reason"]] += 1
        report.rejected_by_type[outcome.task] += 1
    elif outcome.failure is not None:
        report.failures.append(outcome.failure)


def run_generation(job: GenerateJob) -> GenerationReport:
    """Generate every unfinished pair of the job; returns the report (also written beside the output)."""
    _check_job(job)
    began = time.monotonic()
    prompts = load_prompts(job.prompts_dir)
    contexts, uncaptioned = load_contexts(job.captions, job.instances)
    contexts = contexts[:job.limit] if job.limit is not None else contexts
    client = TeacherClient(job.teacher)
    rejected_path, report_path = output_paths(job.out)
    report = GenerationReport(output=str(job.out), rejected_file=str(rejected_path), uncaptioned_images=uncaptioned)

    with client, JsonlAppender(job.out) as records, JsonlAppender(rejected_path) as rejects:
        report.torn_rows_dropped = sum(1 for log in (records, rejects) if log.dropped_tail)
        finished = {row.get("id") for row in records.rows}
        if not job.retry_rejected:
            finished |= {row.get("id") for row in rejects.rows}
        pairs = [(context, task) for context in contexts for task in job.types]
        report.pairs = len(pairs)
        pending_pairs = [(context, task) for context, task in pairs
                         if record_id(context.image_id, task) not in finished]
        report.skipped = len(pairs) - len(pending_pairs)
        _drive(_Work(job, prompts, client), pending_pairs, report, records, rejects)

    report.requests = client.stats.requests
    report.retries = client.stats.retries
    report.elapsed_s = time.monotonic() - began
    report.write(report_path)
    return report


def _drive(work: _Work, pending_pairs: list, report: GenerationReport, records: JsonlAppender,
           rejects: JsonlAppender) -> None:
    from tqdm import tqdm

    depth = 2 * work.job.concurrency  # enough queued to keep every thread busy, few enough to stop fast
    pending = iter(pending_pairs)
    in_flight: set[Future] = set()
    bar = tqdm(total=len(pending_pairs), unit="pair", desc="generate",
               disable=not work.job.progress or not pending_pairs)
    with ThreadPoolExecutor(max_workers=work.job.concurrency, thread_name_prefix="teacher") as pool:
        try:
            _bounded_submit(pool, work, pending, in_flight, depth)
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    _record_outcome(outcome, report, records, rejects)
                    if outcome.fatal and outcome.failure and report.aborted is None:
                        report.aborted = outcome.failure.message
                bar.update(len(done))
                bar.set_postfix(ok=sum(report.written.values()), rejected=sum(report.rejected.values()),
                                failed=len(report.failures), refresh=False)
                if report.aborted is None:
                    _bounded_submit(pool, work, pending, in_flight, depth)
        except KeyboardInterrupt:
            report.aborted = "interrupted"
            work.stop.set()
            for future in in_flight:
                future.cancel()
            for future in in_flight:  # the ones already running finish and are kept
                if not future.cancelled():
                    _record_outcome(future.result(), report, records, rejects)
        finally:
            bar.close()
