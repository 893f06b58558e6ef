"""The trim/drop report of a training run: one JSON line per touched sample, one summary log line.

Samples are tokenised in the training process or in `datasets` map workers (its children), so each
appends its lines to a run file in the temp folder named after the training process's pid. The run file
is created when the template is set up for a training run (workers never create it, so a template used
outside training writes nothing). The first batch the collator builds claims the file, writes
`<output_dir>/llava_lf_truncation.jsonl` (summary first, then samples by index) and logs the totals.
If no process tokenised (the data came from the datasets cache or `tokenized_path`), that is logged too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

REPORT_NAME = "llava_lf_truncation.jsonl"
LOGGED_INDICES = 10  # the log line lists this many indices; the report has them all


@dataclass(frozen=True)
class SampleRecord:
    index: int | None  # row in the dataset as the host preprocesses it (after merging and max_samples)
    action: Literal["trimmed", "dropped"]
    reason: str
    cutoff_len: int
    tokens: int
    kept_tokens: int
    first_turn_tokens: int
    turns: int
    kept_turns: int
    image_tokens: int
    kept_image_tokens: int
    images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    cutoff_len: int | None
    template: str | None
    tokenised: bool
    counts: dict[str, int]
    dropped_indices: list[int | None]
    trimmed_indices: list[int | None]

    def log_line(self) -> str:
        if not self.tokenised:
            return ("llava-lf: the tokenised data came from the datasets cache or tokenized_path, so no sample was "
                    "checked against cutoff_len in this run; the run that tokenised it wrote "
                    f"<its output_dir>/{REPORT_NAME} (set overwrite_cache: true to check and report here)")
        head = f"llava-lf: cutoff_len {self.cutoff_len} ({self.template})"
        trimmed, dropped = self.counts.get("trimmed", 0), self.counts.get("dropped", 0)
        if not trimmed and not dropped:
            return f"{head}: every sample fits, none trimmed or dropped; report: {self.path}"
        return (f"{head}: {trimmed} samples trimmed at turn boundaries{_indices(self.trimmed_indices)}, "
                f"{dropped} dropped as longer than cutoff_len in their first turn{_indices(self.dropped_indices)}; "
                f"report: {self.path}")


def _indices(indices: list[int | None]) -> str:
    if not indices:
        return ""
    shown = ", ".join("?" if index is None else str(index) for index in indices[:LOGGED_INDICES])
    more = f", ... {len(indices) - LOGGED_INDICES} more" if len(indices) > LOGGED_INDICES else ""
    return f" (indices {shown}{more})"


def run_file(run_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"llava_lf-truncation-{run_pid}.jsonl"


def is_reporting_rank() -> bool:
    """Only global rank 0 reports (other ranks read the same data, usually from rank 0's cache)."""
    return os.environ.get("RANK", "0") == "0"


def open_run(output_dir: str, template: str) -> int:
    """Start this process's run file (replacing a stale one from a reused pid); returns the run's pid."""
    pid = os.getpid()
    header = {"event": "run", "pid": pid, "output_dir": str(Path(output_dir).resolve()), "template": template}
    run_file(pid).write_text(json.dumps(header) + "\n")
    return pid


def _append(run_pid: int, line: dict[str, Any]) -> bool:
    """Append one line to an open run file; False when there is none (not a training run)."""
    try:
        fd = os.open(run_file(run_pid), os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return False
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write per line: appends do not interleave
    finally:
        os.close(fd)
    return True


_STARTED: set[tuple[int, int]] = set()  # (run pid, this pid) pairs that already said "tokenising"


def note_tokenising(run_pid: int, cutoff_len: int) -> None:
    """Mark, once per process, that samples were tokenised in this run (so a cache hit can be told apart)."""
    key = (run_pid, os.getpid())
    if key not in _STARTED and is_reporting_rank():
        _STARTED.add(key)
        _append(run_pid, {"event": "tokenising", "pid": os.getpid(), "cutoff_len": cutoff_len})


def record_sample(run_pid: int, record: SampleRecord) -> None:
    if is_reporting_rank():
        _append(run_pid, {"event": "sample", **asdict(record)})


def claim_and_summarise(run_pid: int) -> ReportSummary | None:
    """Turn the run file into the report, once per run (the first claimer wins); None if claimed already."""
    source = run_file(run_pid)
    claimed = source.with_name(f"{source.name}.{os.getpid()}.claimed")
    try:
        os.rename(source, claimed)  # atomic: one process of the run gets it
    except FileNotFoundError:
        return None
    try:
        lines = [json.loads(line) for line in claimed.read_text().splitlines() if line.strip()]
    finally:
        claimed.unlink(missing_ok=True)
    header = next((line for line in lines if line["event"] == "run"), {})
    tokenising = [line for line in lines if line["event"] == "tokenising"]
    samples = sorted((line for line in lines if line["event"] == "sample"),
                     key=lambda line: (line["index"] is None, line["index"] or 0, line["action"]))
    counts = Counter(line["action"] for line in samples)
    path = Path(header.get("output_dir", ".")) / REPORT_NAME
    summary = ReportSummary(
        path=path, cutoff_len=tokenising[0]["cutoff_len"] if tokenising else None, template=header.get("template"),
        tokenised=bool(tokenising), counts=dict(counts),
        dropped_indices=[line["index"] for line in samples if line["action"] == "dropped"],
        trimmed_indices=[line["index"] for line in samples if line["action"] == "trimmed"],
    )
    if summary.tokenised:
        _write_report(path, summary, samples)
    return summary


def _write_report(path: Path, summary: ReportSummary, samples: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {"summary": {"cutoff_len": summary.cutoff_len, "template": summary.template,
                        "trimmed": summary.counts.get("trimmed", 0), "dropped": summary.counts.get("dropped", 0)}}
    body = [{key: value for key, value in sample.items() if key != "event"} for sample in samples]
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(line) + "\n" for line in [head, *body]))
    os.replace(partial, path)
