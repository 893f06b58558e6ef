"""What a conversion found: one `Rejection` per dropped record, counts by reason, counts of repairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from .reader import Unparsable

Reason = Literal[
    "malformed",  # not an object, or a field of the wrong type
    "roles",  # roles out of order, or no human/gpt pair
    "empty_turn",
    "placeholder_count",  # number of '<image>' placeholders differs from the number of images
    "image_in_answer",  # a literal '<image>' in a gpt (or system) turn
    "plain_shape",  # llava_plain takes one image and one human/gpt pair
    "duplicate_id",
    "path_escape",  # absolute, '..', or a symlink out of the image folder
    "missing_image",
    "image_undecodable",
    "image_truncated",
    "image_too_large",  # more pixels than the limit (decompression bomb)
    "too_long",  # the first turn alone exceeds the cutoff length
]


@dataclass(frozen=True)
class Problem:
    reason: str
    field: str  # where in the record, e.g. "conversations[3].value"
    message: str
    fix: str


@dataclass(frozen=True)
class Rejection:
    """One dropped record: its first problem, plus any others found in the same record, and the record itself.

    `record` is the record as read, so `NAME.rejected.jsonl` loses nothing: fix the rows and convert them again.
    """

    index: int
    id: str | None
    reason: str
    field: str
    message: str
    fix: str
    line: int | None = None
    also: tuple[Problem, ...] = ()
    record: object = field(default=None, repr=False, compare=False)
    at: str | None = None  # where a parquet row lies: shard and row

    @property
    def where(self) -> str:
        return self.at if self.at is not None else f"line {self.line}"

    @classmethod
    def of(cls, index: int, record_id: str | None, line: int | None, problems: list[Problem],
           record: object = None, at: str | None = None) -> Rejection:
        first, *others = problems
        return cls(index, record_id, first.reason, first.field, first.message, first.fix, line, tuple(others), record,
                   at)

    def to_json(self) -> dict:
        """The report row; a record too deep to parse is kept as its text (`record_text`) instead of `record`."""
        row = asdict(replace(self, record=None))  # asdict would deep-copy the record
        if not self.also:
            del row["also"]
        if self.at is None:
            del row["at"]
        if isinstance(self.record, Unparsable):
            del row["record"]
            row["record_text"] = self.record.text
        else:
            row["record"] = self.record
        return row


@dataclass
class ConversionReport:
    source: str
    output: str | None  # None for `check`, which writes no dataset
    total: int = 0
    written: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first `keep` of them; the file has all
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)  # repairs to kept records, by name (docs/data.md)
    rejected_path: str | None = None
    notes: list[str] = field(default_factory=list)  # how options were resolved (e.g. image tokens used)
    keep: int = 1000  # rejections held in memory, so memory does not grow with a bad file
    stored_images: int | None = None  # parquet: distinct inline images of kept records (None: not parquet)
    duplicate_images: int = 0  # parquet: further uses of an image already stored
    image_store: str | None = None  # the folder they are stored in

    def add_rejection(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.reasons[rejection.reason] += 1
        if len(self.rejections) < self.keep:
            self.rejections.append(replace(rejection, record=None))  # records go to the file, not to memory

    def summary(self) -> str:
        target = f"{self.written} written to {self.output}" if self.output else f"{self.written} valid"
        lines = [f"{self.source}: {self.total} records, {target}, {self.rejected} rejected"]
        lines += [f"  note: {note}" for note in self.notes]
        if self.stored_images is not None:
            stored = f" stored in {self.image_store}" if self.image_store else ""
            lines.append(f"  images: {self.stored_images} distinct inline images{stored}, "
                         f"{self.duplicate_images} duplicate uses of them" + (" (stored once)" if stored else ""))
        examples = {}
        for rejection in self.rejections:
            examples.setdefault(rejection.reason, rejection)
        for reason, count in self.reasons.most_common():
            lines.append(f"  rejected {reason}: {count}")
            if (example := examples.get(reason)) is not None:
                lines.append(f"    e.g. record {example.index} (id {example.id}, {example.where}), "
                             f"{example.field}: {example.message}; fix: {example.fix}")
        lines += [f"  changed {change}: {count}" for change, count in self.changes.most_common()]
        if self.rejected_path and self.rejected:
            lines.append(f"  every rejected record, with its fix: {self.rejected_path}")
        return "\n".join(lines)
