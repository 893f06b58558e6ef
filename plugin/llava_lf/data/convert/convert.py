"""LLaVA JSON -> the host's sharegpt JSONL: stream, validate, resolve images, fit the cutoff, write.

Records flow one at a time (a window of batches when images are verified), so memory does not grow
with the file. Nothing is dropped silently: each rejected record becomes a line of
`NAME.rejected.jsonl` with its reason and fix, and each change made to a kept record is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llava_lf.errors import LlavaLfError

from .cutoff import CutoffSpec, TurnBudget
from .ids import SeenIds
from .images import DEFAULT_MAX_PIXELS, ImageVerifier, fault_problem
from .outputs import (
    ConvertOutputs,
    check_image_folder,
    check_not_inputs,
    check_readable,
    open_failed,
    plan_convert_outputs,
)
from .paths import ImageFolder
from .reader import SourceRecord, iter_records, iter_records_with_progress
from .records import SharegptRecord, Template, dataset_info_entry
from .report import ConversionReport, Problem, Rejection
from .validate import claim_output_id, normalise, record_id, record_images
from .writer import AtomicFile, DatasetWriter, remove_leftovers, update_dataset_info

__all__ = ["ConvertOptions", "check_file", "convert_file", "convert_records", "update_dataset_info"]



@dataclass(frozen=True)
class ConvertOptions:
    template: Template = "llava_v1"
    verify_images: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int | None = None  # image verification processes (default: one per CPU)
    cutoff_len: int | None = None  # with `tokenizer`: trim to this many tokens at turn boundaries
    tokenizer: Path | None = None  # a tokenizer or model folder
    image_tokens: int | None = None  # tokens per image, when the tokenizer folder has no Llava processor config
    absolute_paths: bool = False
    allow_symlinks: bool = False
    progress: bool = False  # a tqdm bar over the bytes read (shown on a terminal only)

    def __post_init__(self) -> None:
        if self.template not in Template.__args__:
            raise LlavaLfError(f"unknown template {self.template!r}; choose one of {', '.join(Template.__args__)}")
        if (self.cutoff_len is None) != (self.tokenizer is None):
            raise LlavaLfError("--cutoff-len and --tokenizer go together: the cutoff is counted in the model's tokens")
        problems = [f"{flag} must be positive, got {value}" for flag, value in (
            ("--cutoff-len", self.cutoff_len), ("--image-tokens", self.image_tokens), ("--workers", self.workers),
            ("--max-pixels", self.max_pixels)) if value is not None and value < 1]
        if problems:
            raise LlavaLfError(problems)


@dataclass(slots=True)
class _Kept:
    """A record that passed every check so far, ready to write."""

    index: int
    line: int | None
    source_id: str | None
    source: object  # the record for the report, if image verification rejects it
    record: SharegptRecord
    image_files: list[str]  # absolute paths, for verification
    image_fields: list[str]  # where each image is named in the source record
    changes: list[str] = field(default_factory=list)
    at: str | None = None


class FolderImages:
    """LLaVA JSON's images: paths, resolved under the image folder (parquet's are `image_store.ImageStore`)."""

    carry: tuple[str, ...] = ()
    decode = False  # images are decoded by the --verify-images stage, not here

    def __init__(self, folder: ImageFolder):
        self.folder = folder

    def listed(self, record: object, problems: list[Problem]) -> list[str] | None:
        return record_images(record, problems)

    def resolve(self, record: object, images: list[str] | None, problems: list[Problem]):
        written, files, fields = [], [], []
        for position, path in enumerate(images or ()):
            field_name = "image" if type(record["image"]) is str else f"image[{position}]"
            if (resolved := self.folder.resolve(path, field_name, problems)) is not None:
                written.append(resolved[0])
                files.append(resolved[1])
                fields.append(field_name)
        return written, files, fields, ()

    def keep(self, pending) -> None:
        pass

    def reportable(self, record: object) -> object:
        return record

    def finish(self, report: ConversionReport) -> None:
        pass

    def close(self) -> None:
        pass

    def remove_leftovers(self) -> list[str]:
        return []


def _validated(sources: Iterable[SourceRecord], images: FolderImages, options: ConvertOptions,
               budget: TurnBudget | None) -> Iterator[_Kept | Rejection]:
    seen = SeenIds()
    plain = options.template == "llava_plain"
    for source in sources:
        problems: list[Problem] = []
        rid = record_id(source.value, problems)
        listed = images.listed(source.value, problems)
        normalised = normalise(source.value, listed, plain, problems)
        written, files, fields, pending = images.resolve(source.value, listed, problems)
        output_id = claim_output_id(seen, source.value, rid, source.index, problems)
        turns = normalised.turns if normalised is not None and not problems else None
        if turns is not None and budget is not None:
            fitted = budget.fit(turns, problems)
            if fitted is not None and len(fitted) < len(turns):
                normalised.changes.append("turns_trimmed")
            turns = fitted
        if turns is None:
            yield Rejection.of(source.index, rid, source.line, problems, images.reportable(source.value), source.at)
            continue
        images.keep(pending)  # stored only now: a rejected row leaves no file behind
        record: SharegptRecord = {"id": output_id, "conversations": turns, "images": written}
        for column in images.carry:
            record[column] = source.value.get(column)
        yield _Kept(source.index, source.line, rid, images.reportable(source.value), record, files, fields,
                    normalised.changes, source.at)


def _image_files(item: _Kept | Rejection) -> list[str]:
    return item.image_files if isinstance(item, _Kept) else []


def _verified(items: Iterator[_Kept | Rejection], options: ConvertOptions) -> Iterator[_Kept | Rejection]:
    """Reject kept records whose images do not decode (checked in parallel, order kept)."""
    for item, faults in ImageVerifier(options.max_pixels, options.workers).verify(items, _image_files):
        bad = [(position, fault) for position, fault in enumerate(faults) if fault is not None]
        if not bad:
            yield item
            continue
        problems = [fault_problem(fault, item.image_fields[position], item.image_files[position])
                    for position, fault in bad]
        yield Rejection.of(item.index, item.source_id, item.line, problems, item.source, item.at)


def _pipeline(sources: Iterable[SourceRecord], images: FolderImages, options: ConvertOptions,
              report: ConversionReport) -> Iterator[_Kept | Rejection]:
    budget = None
    if options.cutoff_len is not None:
        budget = TurnBudget(CutoffSpec(options.cutoff_len, options.tokenizer, options.template, options.image_tokens))
        report.notes.extend(budget.notes)
    items = _validated(sources, images, options, budget)
    if options.verify_images and not images.decode:
        items = _verified(items, options)
    for item in items:
        report.total += 1
        if isinstance(item, Rejection):
            report.add_rejection(item)
        else:
            report.written += 1
            report.changes.update(item.changes)
        yield item


def _sources(src: Path, options: ConvertOptions) -> Iterator[SourceRecord]:
    if not options.progress:
        yield from iter_records(src)
        return
    from tqdm import tqdm

    with tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc=src.name, disable=None) as bar:
        yield from iter_records_with_progress(src, bar)


def _folder_images(image_folder: Path, out_dir: Path | None, options: ConvertOptions) -> FolderImages:
    return FolderImages(ImageFolder(image_folder, out_dir, options.absolute_paths, options.allow_symlinks))


def convert_records(records: Iterable[object], image_folder: Path, out_dir: Path,
                    options: ConvertOptions | None = None) -> Iterator[SharegptRecord | Rejection]:
    """Yield a converted record or a `Rejection` for each parsed LLaVA record, in order."""
    options = options or ConvertOptions()
    sources = (SourceRecord(index, None, value) for index, value in enumerate(records))
    report = ConversionReport(source="<records>", output=None)
    for item in _pipeline(sources, _folder_images(Path(image_folder), Path(out_dir), options), options, report):
        yield item if isinstance(item, Rejection) else item.record


def convert_file(src: Path, image_folder: Path, out_dir: Path, name: str,
                 options: ConvertOptions | None = None) -> ConversionReport:
    """Convert a LLaVA JSON/JSONL file to `out_dir/name.jsonl` and register it in `out_dir/dataset_info.json`.

    Raises `LlavaLfError` when the file is not JSON, an output cannot be written or no record passed;
    earlier output is then untouched. The name, folders and `dataset_info.json` are checked before anything
    is written.
    """
    options = options or ConvertOptions()
    src = Path(src)
    plan = plan_convert_outputs(src, Path(image_folder), Path(out_dir), name)
    report = ConversionReport(source=str(src), output=str(plan.dataset), rejected_path=str(plan.rejected))
    images = _folder_images(Path(image_folder), plan.folder, options)
    return write_dataset(plan, name, _sources(src, options), images, options, report)


def write_dataset(plan: ConvertOutputs, name: str, sources: Iterable[SourceRecord], images: FolderImages,
                  options: ConvertOptions, report: ConversionReport) -> ConversionReport:
    """Run the pipeline into `plan`'s files, published only when whole (the dataset, then its registration)."""
    try:
        dataset = DatasetWriter(plan.dataset)
    except OSError as error:
        plan.remove_if_created()
        raise open_failed(plan.folder, error) from None
    try:
        rejected = AtomicFile(plan.rejected)
    except OSError as error:
        dataset.discard()
        plan.remove_if_created()
        raise open_failed(plan.folder, error) from None
    try:
        for item in _pipeline(sources, images, options, report):
            if isinstance(item, Rejection):
                rejected.write_json_line(item.to_json())
            else:
                dataset.write(item.record)
        if report.written == 0:
            raise nothing_kept(report)
        images.finish(report)  # stored images on disk before the dataset that names them
    except BaseException:
        dataset.discard()
        rejected.discard()
        plan.remove_if_created()
        raise
    finally:
        images.close()
    if dataset.reordered:
        report.changes["moved_to_front_for_schema"] += 1
    # Data first, then its registration: a kill in between leaves a complete file, registered or not.
    dataset.commit()
    rejected.commit()
    update_dataset_info(plan.folder, name, dataset_info_entry(plan.dataset.name))
    leftovers = remove_leftovers(plan.folder) + [f"images/{entry}" for entry in images.remove_leftovers()]
    report.notes.extend(f"removed {leftover}, left by an interrupted run" for leftover in leftovers)
    return report


def nothing_kept(report: ConversionReport) -> LlavaLfError:
    """Every record was rejected (or there were none): an empty dataset must not replace a good one."""
    if report.total == 0:
        lines = [f"{report.source} holds no records (an empty array or file): nothing to convert"]
    else:
        lines = [f"{report.source}: {report.total} records read, none kept: nothing was written"]
    if report.output is not None:
        lines[0] += f"; {report.output} and its registration are as they were"
    lines += [line.strip() for line in report.summary().splitlines()[1:]
              if not line.lstrip().startswith("every rejected record")]
    if report.rejected:
        lines.append("when every record fails alike, an option is likely wrong (--image-folder, --template); "
                     "`llava-lf check SRC ... --report FILE` lists every rejected record")
    return LlavaLfError(lines)


def check_file(src: Path, image_folder: Path, options: ConvertOptions | None = None,
               rejected_path: Path | None = None) -> ConversionReport:
    """Validate as `convert_file` does, writing no dataset (only the rejection list, if a path is given)."""
    options = options or ConvertOptions()
    src = Path(src)
    problems = check_readable(src) + check_image_folder(Path(image_folder))
    if rejected_path is not None and not problems:
        problems += check_not_inputs([Path(rejected_path)], [src])
    if problems:
        raise LlavaLfError(problems)
    report = ConversionReport(source=str(src), output=None,
                              rejected_path=str(rejected_path) if rejected_path is not None else None)
    images = _folder_images(Path(image_folder), None, options)
    return check_records(_sources(src, options), images, options, report, rejected_path)


def check_records(sources: Iterable[SourceRecord], images: FolderImages, options: ConvertOptions,
                  report: ConversionReport, rejected_path: Path | None) -> ConversionReport:
    """Run the pipeline, writing only the rejections (to `rejected_path`, when given)."""
    try:
        rejected = AtomicFile(Path(rejected_path)) if rejected_path is not None else None
    except OSError as error:
        raise open_failed(Path(rejected_path).parent, error) from None
    try:
        for item in _pipeline(sources, images, options, report):
            if rejected is not None and isinstance(item, Rejection):
                rejected.write_json_line(item.to_json())
        if report.total == 0:
            raise nothing_kept(report)
        images.finish(report)
    except BaseException:
        if rejected is not None:
            rejected.discard()
        raise
    finally:
        images.close()
    if rejected is not None:
        rejected.commit()
        report.notes.extend(f"removed {leftover}, left by an interrupted run"
                            for leftover in remove_leftovers(Path(rejected_path).parent))
    return report
