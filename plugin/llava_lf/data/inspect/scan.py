"""Read each dataset once, as a stream, and gather its card figures; several datasets make one card."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .accumulators import spill_folder, spilling_to
from .figures import record_figures
from .images import ImageStats
from .kinds import TypeRule
from .near_duplicates import DEFAULT_MAX_DISTANCE, near_duplicates
from .plain_batch import plain_batch
from .reading import Batch, HandOver, iter_batches
from .split_scan import scan_split
from .stats import DatasetStats
from .tokens import TokenCounter, TokenSpec, TokenStats
from .verdict import ConverterChecks, is_converted

TEMPLATES = ("llava_v1", "llava_plain")
ONE_BY_ONE = 16  # a batch that is not plain is split in halves down to this many records, then read one by one


@dataclass(frozen=True)
class InspectOptions:
    image_folder: Path | None = None  # where a LLaVA file's image paths start; None: images are not looked at
    template: str = "llava_v1"  # the training template: llava_plain applies the converter's stage-1 checks
    tokenizer: Path | None = None  # a tokenizer or model folder: tokens per record
    cutoff_len: int | None = None  # with a tokenizer: what this cutoff would cut
    image_tokens: int | None = None  # tokens per image, when the tokenizer folder has no Llava processor config
    image_headers: bool = True  # read image headers (sizes); off: only existence
    near_duplicates: bool = False
    max_distance: int = DEFAULT_MAX_DISTANCE
    workers: int | None = None  # near-duplicate hashing processes

    def __post_init__(self) -> None:
        problems = []
        if self.template not in TEMPLATES:
            problems.append(f"--template {self.template!r} is not one of {', '.join(TEMPLATES)}")
        if self.cutoff_len is not None and self.tokenizer is None:
            problems.append("--cutoff-len needs --tokenizer: the cutoff is counted in the model's tokens")
        if self.cutoff_len is not None and self.cutoff_len < 1:
            problems.append(f"--cutoff-len must be positive, got {self.cutoff_len}")
        if self.image_folder is not None and not self.image_folder.is_dir():
            problems.append(_not_a_folder(self.image_folder))
        if self.near_duplicates and not self.image_headers:
            problems.append("--near-duplicates reads the images: leave out --no-image-headers")
        if not 0 <= self.max_distance < 32:
            problems.append(f"--max-distance must be between 0 and 31 bits, got {self.max_distance}")
        if problems:
            raise LlavaLfError(problems)


def _not_a_folder(path: Path) -> str:
    return f"--image-folder {path} is not a folder; pass the folder the records' 'image' paths start from"


@dataclass(frozen=True)
class DatasetInput:
    label: str
    path: Path
    image_folder: Path | None = None  # this dataset's own image folder (else InspectOptions.image_folder)

    @classmethod
    def parse(cls, text: str) -> DatasetInput:
        """`PATH` (labelled by its file name) or `LABEL=PATH`."""
        label, sep, path = text.partition("=")
        if sep and label and "/" not in label:
            return cls(label, Path(path))
        return cls(Path(text).stem, Path(text))


def scan_dataset(data: DatasetInput, options: InspectOptions, counter: TokenCounter | None) -> DatasetStats:
    if not data.path.is_file():
        raise LlavaLfError(f"{data.path}: no such file; pass LLaVA JSON/JSONL or a dataset `llava-lf convert` wrote")
    images = ImageStats(headers=options.image_headers)
    if options.near_duplicates:
        images.readable = []
    tokens = TokenStats(options.cutoff_len) if counter is not None else None
    stats = DatasetStats(data.label, str(data.path), images, tokens)
    image_folder = data.image_folder or options.image_folder
    if image_folder is not None and not image_folder.is_dir():
        raise LlavaLfError(_not_a_folder(image_folder))
    rule = TypeRule.for_file(data.path)
    # The cyclic collector would walk the growing count tables again and again; records hold no cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        split = None
        if counter is None and image_folder is None and not options.near_duplicates:
            split = scan_split(data.path, stats, lambda: _checks(image_folder, data, options), rule, _scan)
        if split is None:
            _scan(iter_batches(data.path), _checks(image_folder, data, options), rule, stats, counter)
        else:
            stats = split
    finally:
        if collecting:
            gc.enable()
    return stats


def _checks(image_folder: Path | None, data: DatasetInput, options: InspectOptions) -> ConverterChecks:
    return ConverterChecks(image_folder, data.path.parent, options.template == "llava_plain")


def _scan(batches: Iterable[Batch], checks: ConverterChecks, rule: TypeRule, stats: DatasetStats,
          counter: TokenCounter | None, read_images: bool = True) -> None:
    for batch in batches:
        if counter is None:  # token counts need each record's turns as the converter writes them
            _scan_plain(batch, 0, len(batch.values), checks, rule, stats, read_images)
        else:
            _scan_records(batch, 0, len(batch.values), checks, rule, stats, counter, read_images)


def _scan_plain(batch: Batch, begin: int, end: int, checks: ConverterChecks, rule: TypeRule, stats: DatasetStats,
                read_images: bool) -> None:
    """Records [begin, end) of the batch as one plain batch; else its halves, down to `ONE_BY_ONE` records."""
    if read_images or not checks.checks_paths:
        plain = plain_batch(batch.values[begin:end], batch.start + begin, checks, rule)
        if plain is not None:
            stats.add_batch(batch.start + begin, plain)
            return
    if end - begin <= ONE_BY_ONE:
        _scan_records(batch, begin, end, checks, rule, stats, None, read_images)
        return
    middle = (begin + end) // 2
    _scan_plain(batch, begin, middle, checks, rule, stats, read_images)
    _scan_plain(batch, middle, end, checks, rule, stats, read_images)


def _scan_records(batch: Batch, begin: int, end: int, checks: ConverterChecks, rule: TypeRule, stats: DatasetStats,
                  counter: TokenCounter | None, read_images: bool) -> None:
    """Records [begin, end) of the batch, one by one."""
    images, tokens = stats.images, stats.tokens
    check, add_figures, add_problems = checks.check, stats.add_figures, stats.add_problems
    formats = stats.formats
    for position in range(begin, end):
        value, index = batch.values[position], batch.start + position
        verdict = check(value, index)
        if verdict.files is not None:
            if not read_images:  # a converted dataset's images: only a single pass counts them
                raise HandOver
            for written, full in zip(verdict.images, verdict.files):
                images.add(written, full)
        if counter is not None and verdict.normalised is not None:
            counter.count(verdict.normalised.turns, tokens, verdict.problems)
        formats["converted" if is_converted(value) else "llava"] += 1
        add_figures(index, verdict.record_id, record_figures(value, verdict.images, rule))
        if verdict.problems:  # the line is counted only for the few examples the card shows
            add_problems(index, verdict.record_id, partial(batch.line, position), verdict.problems)


def inspect_datasets(datasets: list[DatasetInput], options: InspectOptions) -> dict:
    """The card's figures (what card.json holds) for the datasets, in the order given."""
    if not datasets:
        raise LlavaLfError("give at least one dataset to inspect")
    labels = [data.label for data in datasets]
    if len(set(labels)) != len(labels):
        raise LlavaLfError(f"two datasets share a label ({', '.join(labels)}); name them as LABEL=PATH")
    counter = None
    if options.tokenizer is not None:
        counter = TokenCounter(TokenSpec(options.tokenizer, options.template, options.cutoff_len, options.image_tokens))
    notes = list(counter.notes) if counter is not None else ["no --tokenizer: lengths in words only"]
    if options.image_folder is None and any(data.image_folder is None for data in datasets):
        notes.append("no --image-folder for some datasets: their image paths were not checked and no image was "
                     "read (a converted dataset's are, from its own folder)")
    cards = []
    for data in datasets:
        # Hashes past a few MB go to disk until the card is written, so memory stays flat (`accumulators`).
        with spill_folder() as spill, spilling_to(spill):
            stats = scan_dataset(data, options, counter)
            card = stats.to_json()
        folder = data.image_folder or options.image_folder
        card["image_folder"] = str(folder) if folder is not None else None
        card["near_duplicates"] = None
        if stats.images.readable is not None:
            files = stats.images.readable
            hashed, groups = near_duplicates([full for full, _ in files], [name for _, name in files],
                                             options.max_distance, options.workers)
            card["near_duplicates"] = {"hashed": hashed, "max_distance": options.max_distance,
                                       "images_in_groups": sum(len(group.images) for group in groups),
                                       "groups": [{"images": list(group.images), "max_distance": group.max_distance}
                                                  for group in groups]}
        cards.append(card)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()}
    return {"generated_by": "llava-lf inspect", "options": settings, "notes": notes, "datasets": cards}
