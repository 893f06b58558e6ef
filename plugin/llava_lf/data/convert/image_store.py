"""The images of parquet rows: inline bytes stored by content under the dataset folder's `images/`, bare paths
looked up under --image-folder as the JSON path does.

An image's header is read before its record is kept (format and pixel count: a non-image, an unknown format or
a decompression bomb is refused without decoding it). A kept image is written once: its name is the first 128
bits of its SHA-256, so a repeat (in this run, an earlier run, another dataset in the same folder) is the same
file, written under a locked temporary name and renamed when whole: a killed run leaves whole images or none,
and the next run removes its temporaries (docs/data.md, "Parquet in").
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llava_lf.common.owner_lock import create_held

from .ids import SeenIds
from .image_headers import sniff
from .images import fault_problem, inspect_image
from .parquet_reader import ImageRef
from .paths import ImageFolder
from .reader import SourceRecord
from .report import ConversionReport, Problem
from .writer import TMP_PREFIX, remove_leftovers

STORE_FOLDER = "images"
_WRITES_IN_FLIGHT = 256  # images handed to the threads and not yet written (about 25 MB at 100 KB)
_BYTES_FIX = "replace the row's image bytes with a valid JPEG/PNG, or remove the row"


@dataclass(frozen=True, slots=True)
class PendingImage:
    digest: str
    data: bytes | memoryview  # a view into the shard's batch: no copy
    file: str  # where it is stored (absolute)


def _syncfs(folder: Path) -> None:
    """Flush the file system holding `folder` (one call, where a sync per image file would cost one each)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class ImageStore:
    """The `images` of parquet records for `convert._validated`: listed, checked and resolved; stored when kept."""

    def __init__(self, out_dir: Path | None, folder: ImageFolder | None, absolute: bool, max_pixels: int,
                 decode: bool = False, carry: tuple[str, ...] = (), threads: int | None = None):
        # None: `check`, which writes nothing
        self.root = Path(os.path.abspath(out_dir), STORE_FOLDER) if out_dir is not None else None
        self._prefix = f"{self.root}/" if absolute and self.root else f"{STORE_FOLDER}/"
        self.folder, self.max_pixels, self.decode = folder, max_pixels, decode
        self.carry = carry  # source columns copied onto each written record (data_source)
        self._seen = SeenIds()
        self._folders: set[str] = set()
        self.stored = self.duplicates = 0
        self.threads = threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="llava-lf-images")
        self._writes: deque[Future] = deque()

    def inspect(self, data: bytes | memoryview) -> tuple[str | None, tuple[str, str] | None, str | None]:
        """(extension, fault, digest) of inline bytes: the header checked, the content hashed."""
        extension, fault = sniff(data, self.max_pixels, self.decode)
        return extension, fault, hashlib.sha256(data).hexdigest()[:32] if fault is None else None

    def inspect_rows(self, rows: list[SourceRecord]) -> list[SourceRecord]:
        """`inspect` every inline image of `rows` ahead of validation (hashing and writing release the GIL, so this
        runs in the store's threads beside the main one)."""
        for row in rows:
            image = row.value.get("image")
            for ref in image if type(image) is list else ():
                if ref.data:
                    ref.checked = self.inspect(ref.data)
        return rows

    def ahead(self, batches: Iterable[list[SourceRecord]]) -> Iterator[SourceRecord]:
        """The rows of `batches` in order, each batch inspected in a thread while earlier ones are validated."""
        window: deque[Future] = deque()
        for batch in batches:
            window.append(self.pool.submit(self.inspect_rows, batch))
            if len(window) > self.threads:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()

    def listed(self, record: object, problems: list[Problem]) -> list[ImageRef] | None:
        image = record.get("image") if type(record) is dict else None
        if image is None or type(image) is list:
            return image or []
        problems.append(Problem("malformed", "image", f"expected the Image feature {{bytes, path}} or a list of them, "
                                f"got {image!r:.80}", "store images as datasets.Image() or a list of them"))
        return None

    def resolve(self, record: object, refs: list[ImageRef] | None, problems: list[Problem]):
        """(paths to write, files, fields, images to store once the record is kept); problems added."""
        written, files, fields, pending = [], [], [], []
        for position, ref in enumerate(refs or ()):
            field = "image" if len(refs) == 1 else f"image[{position}]"
            if ref.data is not None and not len(ref.data):
                problems.append(Problem("missing_image", field, "the image's bytes are empty",
                                        "fill in the image's bytes, or remove the image and its '<image>'"))
                continue
            if ref.data is not None:
                extension, fault, digest = ref.checked or self.inspect(ref.data)
                if fault is not None:
                    problems.append(Problem(fault[0], field, f"inline bytes: {fault[1]}", _BYTES_FIX))
                    continue
                name = f"{digest[:2]}/{digest}.{extension}"
                written.append(self._prefix + name)
                files.append(f"{self.root}/{name}" if self.root else name)
                pending.append(PendingImage(digest, ref.data, files[-1]))
            elif ref.path is None:
                problems.append(Problem("missing_image", field, "the image has neither bytes nor a path",
                                        "fill in the image's bytes, or remove the image and its '<image>'"))
                continue
            elif self.folder is None:
                problems.append(Problem("missing_image", field, f"{ref.path!r:.200} has no bytes, and no "
                                        "--image-folder was given to look the path up in",
                                        "pass --image-folder, the folder the rows' image paths start from"))
                continue
            elif (resolved := self.folder.resolve(ref.path, field, problems)) is not None:
                if self.decode and (fault := inspect_image(resolved[1], self.max_pixels)) is not None:
                    problems.append(fault_problem(fault, field, resolved[1]))  # rare in these sets: in this thread
                    continue
                written.append(resolved[0])
                files.append(resolved[1])
            else:
                continue
            fields.append(field)
        return written, files, fields, pending

    def keep(self, pending: list[PendingImage]) -> None:
        """Store a kept record's inline images (in the threads): each distinct one once, repeats counted."""
        for image in pending:
            if not self._seen.add(image.digest):
                self.duplicates += 1
                continue
            self.stored += 1
            if self.root is not None:
                self._writes.append(self.pool.submit(self._write, image))
                if len(self._writes) > _WRITES_IN_FLIGHT:
                    self._writes.popleft().result()  # bounds the bytes held; raises a failed write's error

    def _write(self, image: PendingImage) -> None:
        if os.path.exists(image.file):  # there already: an earlier run's, or another dataset's
            return
        folder = os.path.dirname(image.file)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        fd = None
        while fd is None:  # None: a cleaner took the new name before we locked it
            temporary = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex}.{image.digest}"
            fd = create_held(temporary)
        try:
            view = memoryview(image.data)
            while view:
                view = view[os.write(fd, view):]
            os.replace(temporary, image.file)  # while locked: no cleaner takes it half-way
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def reportable(self, record: object) -> object:
        """The record for the rejection report: image bytes as their size (the row itself stays in its shard)."""
        if type(record) is not dict or type(record.get("image")) is not list:
            return record
        images = [{"bytes": None if ref.data is None else f"<{len(ref.data):,} bytes>", "path": ref.path}
                  for ref in record["image"]]
        return {**record, "image": images}

    def finish(self, report: ConversionReport) -> None:
        """Before the dataset is published: the images on disk, their counts in the report."""
        while self._writes:
            self._writes.popleft().result()
        report.stored_images, report.duplicate_images = self.stored, self.duplicates
        if self.root is not None and self.stored:
            report.image_store = str(self.root)
            _syncfs(self.root)

    def close(self) -> None:
        """Stop the threads (after a failure too: work not started is dropped)."""
        self.pool.shutdown(cancel_futures=True)

    def remove_leftovers(self) -> list[str]:
        return remove_leftovers(self.root) if self.root is not None and self.root.is_dir() else []
