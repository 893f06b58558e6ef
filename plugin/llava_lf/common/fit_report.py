"""The trim/drop report of a preprocessing run: every tokenising process appends what it trimmed or dropped to a
part file, and the dataset seam merges them into `<output_dir>/llava_lf_truncation.jsonl` (docs/templates.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

REPORT_NAME = "llava_lf_truncation.jsonl"
LOGGED_INDICES = 10  # the log line lists this many rows; the report has them all
MATCH_BATCH = 2048  # rows read at a time when matching touched samples to their rows


@dataclass(frozen=True)
class PreprocessRun:
    """What the template needs from the host's preprocessing call; pickled with it into map workers."""

    cutoff_len: int
    output_dir: str
    template: str
    split: Literal["train", "eval"] = "train"

    @property
    def report_path(self) -> Path:
        name = REPORT_NAME if self.split == "train" else REPORT_NAME.replace(".jsonl", f".{self.split}.jsonl")
        return Path(self.output_dir) / name

    @functools.cached_property  # asked once per tokenised sample: a Path built each time cost ~10% of preprocessing
    def parts_dir(self) -> Path:
        return Path(self.output_dir) / f".llava_lf_truncation.{self.split}.parts"


@dataclass(frozen=True)
class SampleRecord:
    sample: str  # content fingerprint (`sample_fingerprint`): the same sample has it in every run and worker
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
    question: str = ""  # the first user turn's first words, to find the sample by eye
    index: int | None = None  # row in the split as the host preprocessed it; filled in when the report is collected


def sample_fingerprint(messages: Iterable[dict[str, Any]], images: Iterable[Any]) -> str:
    """A short stable hash of a host sample (`_prompt + _response`, `_images`), as the mm plugin receives it."""
    content = [[message.get("role"), message.get("content")] for message in messages]
    # ASCII escapes: a lone surrogate (valid in a JSON file, not in UTF-8) hashes like any other text
    return hashlib.sha1(json.dumps([content, image_names(images)]).encode()).hexdigest()[:16]


def image_names(images: Iterable[Any]) -> list[str]:
    """Paths as given; an in-memory image by its kind (its repr would change from run to run)."""
    names = []
    for image in images or []:
        if isinstance(image, str):
            names.append(image)
        elif isinstance(image, dict) and isinstance(image.get("path"), str):
            names.append(image["path"])
        else:
            names.append(type(image).__name__)
    return names


def is_reporting_rank() -> bool:
    """Only global rank 0 reports (other ranks read the same data, usually from rank 0's cache)."""
    return os.environ.get("RANK", "0") == "0"


_PART_FILES: dict[Path, Path] = {}  # parts folder -> this process's part file
os.register_at_fork(after_in_child=_PART_FILES.clear)  # a forked worker writes a file of its own


def _append(run: PreprocessRun, line: dict[str, Any] | None) -> None:
    part, lines = _PART_FILES.get(run.parts_dir), []
    if part is None:  # this process's first line of the run says it tokenised (a cache hit writes none)
        run.parts_dir.mkdir(parents=True, exist_ok=True)
        part = _PART_FILES[run.parts_dir] = run.parts_dir / f"{uuid.uuid4().hex}.jsonl"
        lines.append({"event": "tokenising", "cutoff_len": run.cutoff_len})
    if line:
        lines.append(line)
    with part.open("a", encoding="utf-8") as out:
        out.write("".join(json.dumps(item) + "\n" for item in lines))  # ASCII: any text, lone surrogates too


def note_tokenising(run: PreprocessRun) -> None:
    """Mark, once per process, that this run tokenised samples (so a cache hit can be told apart)."""
    if run.parts_dir not in _PART_FILES and is_reporting_rank():
        _append(run, None)


def record_sample(run: PreprocessRun, record: SampleRecord) -> None:
    if is_reporting_rank():
        _append(run, {"event": "sample", **asdict(record)})


def start(run: PreprocessRun) -> None:
    """Clear what an earlier run with this output_dir left (a stopped run's parts), before the host maps."""
    if is_reporting_rank():
        shutil.rmtree(run.parts_dir, ignore_errors=True)
        _PART_FILES.pop(run.parts_dir, None)


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    cutoff_len: int
    template: str
    tokenised: bool
    counts: dict[str, int]
    dropped_indices: list[int | None]
    trimmed_indices: list[int | None]

    def log_line(self) -> str:
        if not self.tokenised:
            earlier = f"; the run that tokenised it wrote {self.path}" if self.path.is_file() else ""
            return ("llava-lf: the tokenised data came from the datasets cache, so no sample was checked against "
                    f"cutoff_len in this run{earlier} (set overwrite_cache: true to check and report here)")
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


def collect(run: PreprocessRun, dataset: Any) -> ReportSummary | None:
    """Turn the run's parts into the report (rank 0, after the host's map); None on other ranks."""
    if not is_reporting_rank():
        return None
    lines = []
    for part in sorted(run.parts_dir.glob("*.jsonl")):
        lines += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    shutil.rmtree(run.parts_dir, ignore_errors=True)
    _PART_FILES.pop(run.parts_dir, None)
    samples = [{key: value for key, value in line.items() if key != "event"}
               for line in lines if line["event"] == "sample"]
    _assign_rows(samples, dataset)
    samples.sort(key=lambda sample: (sample["index"] is None, sample["index"] or 0, sample["sample"]))
    tokenised = any(line["event"] == "tokenising" for line in lines)
    counts = Counter(sample["action"] for sample in samples)
    summary = ReportSummary(
        path=run.report_path, cutoff_len=run.cutoff_len, template=run.template, tokenised=tokenised,
        counts=dict(counts),
        dropped_indices=[sample["index"] for sample in samples if sample["action"] == "dropped"],
        trimmed_indices=[sample["index"] for sample in samples if sample["action"] == "trimmed"])
    if tokenised:
        _write_report(summary, samples)
    return summary


def _assign_rows(samples: list[dict[str, Any]], dataset: Any) -> None:
    """Give each touched sample its row: the rows whose content has its fingerprint, in order."""
    wanted = {sample["sample"] for sample in samples}
    rows: dict[str, list[int]] = defaultdict(list)
    if wanted and hasattr(dataset, "__len__") and hasattr(dataset, "select_columns"):  # not a streamed split
        table = dataset.select_columns(["_prompt", "_response", "_images"])
        for start in range(0, len(table), MATCH_BATCH):
            batch = table[start : start + MATCH_BATCH]
            for offset, (prompt, response, images) in enumerate(
                    zip(batch["_prompt"], batch["_response"], batch["_images"])):
                fingerprint = sample_fingerprint((prompt or []) + (response or []), images or [])
                if fingerprint in wanted:
                    rows[fingerprint].append(start + offset)
    for sample in sorted(samples, key=lambda sample: sample["sample"]):
        found = rows.get(sample["sample"])
        sample["index"] = found.pop(0) if found else None


def _write_report(summary: ReportSummary, samples: list[dict[str, Any]]) -> None:
    path = summary.path
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {"summary": {"cutoff_len": summary.cutoff_len, "template": summary.template,
                        "trimmed": summary.counts.get("trimmed", 0), "dropped": summary.counts.get("dropped", 0)}}
    partial = path.with_name(path.name + ".partial")
    # Readable UTF-8; a lone surrogate is written as its JSON escape (backslashreplace gives e.g. `\udc80`).
    partial.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in [head, *samples]),
                       encoding="utf-8", errors="backslashreplace")
    os.replace(partial, path)
