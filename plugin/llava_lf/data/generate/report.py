"""What one `llava-lf generate` run did: counts by type and reason, retries, failures, token usage."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class Failure:
    id: str
    reason: str
    message: str
    attempts: int


@dataclass
class GenerationReport:
    output: str
    rejected_file: str
    pairs: int = 0  # (image, type) pairs in scope
    skipped: int = 0  # finished by an earlier run
    written: Counter = field(default_factory=Counter)  # type -> records
    rejected: Counter = field(default_factory=Counter)  # reason -> replies
    rejected_by_type: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)  # not finished: a rerun asks again
    uncaptioned_images: list[int] = field(default_factory=list)
    requests: int = 0  # HTTP requests sent, retries included
    retries: Counter = field(default_factory=Counter)  # reason -> retries
    prompt_tokens: int = 0
    completion_tokens: int = 0
    torn_rows_dropped: int = 0
    aborted: str | None = None
    elapsed_s: float = 0.0

    @property
    def unfinished(self) -> int:
        """Pairs in scope with neither a record nor a rejection (failed, or never sent after an abort)."""
        return self.pairs - self.skipped - sum(self.written.values()) - sum(self.rejected.values())

    def summary(self) -> str:
        done = sum(self.written.values())
        lines = [(f"generate: {self.pairs} (image, type) pairs, {self.skipped} already done; this run wrote {done} "
                  f"to {self.output}, rejected {sum(self.rejected.values())} (see {self.rejected_file}), "
                  f"{len(self.failures)} failed, {self.unfinished} left unfinished")]
        if self.written:
            lines.append("  written: " + ", ".join(f"{task} {n}" for task, n in sorted(self.written.items())))
        if self.rejected:
            lines.append("  rejected: " + ", ".join(f"{reason} {n}" for reason, n in self.rejected.most_common()))
        if self.failures:
            reasons = Counter(failure.reason for failure in self.failures)
            lines.append("  failed (a rerun retries them): " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
        retries = ", ".join(f"{reason} {n}" for reason, n in self.retries.most_common()) or "none"
        lines.append(f"  requests: {self.requests} sent, retries: {retries}")
        if self.uncaptioned_images:
            lines.append(f"  skipped {len(self.uncaptioned_images)} image(s) without captions, "
                         f"e.g. id {self.uncaptioned_images[0]}")
        if self.torn_rows_dropped:
            lines.append(f"  dropped {self.torn_rows_dropped} torn row(s) left by an interrupted run")
        lines.append(f"  tokens: prompt {self.prompt_tokens}, completion {self.completion_tokens}, "
                     f"total {self.prompt_tokens + self.completion_tokens}")
        lines.append(f"  time: {self.elapsed_s:.1f} s")
        if self.aborted:
            lines.append(f"  aborted: {self.aborted}")
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload = {name: dict(value) if isinstance(value, Counter) else value for name, value in payload.items()}
        payload["failures"] = [asdict(failure) for failure in self.failures]
        payload["unfinished"] = self.unfinished
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
