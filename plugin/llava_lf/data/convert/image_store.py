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
import io
import os
import struct
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from llava_lf.common.owner_lock import create_held

from .ids import SeenIds
from .parquet_reader import ImageRef
from .paths import ImageFolder
from .report import ConversionReport, Problem
from .writer import TMP_PREFIX, remove_leftovers

STORE_FOLDER = "images"
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # what training opens; EPS, PSD and the like are refused
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
_HOSTILE = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
_BYTES_FIX = "replace the row's image bytes with a valid JPEG/PNG, or remove the row"


@dataclass(frozen=True, slots=True)
class PendingImage:
    digest: str
    data: bytes
    file: str  # where it is stored (absolute)


def sniff(data: bytes, max_pixels: int, decode: bool = False) -> tuple[str | None, tuple[str, str] | None]:
    """(file extension, None) for an image within the pixel limit, else (None, (reason, message)).

    Reads the header only unless `decode`, which decodes it fully (finds truncated data).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return None, ("image_too_large", f"{width}x{height} = {width * height:,} pixels, over the limit "
                                  f"of {max_pixels:,}")
                if decode:
                    image.load()
                form = image.format
    except Image.DecompressionBombError as error:  # Pillow refuses over twice its limit, before our comparison
        return None, ("image_too_large", f"{error} (the limit here is {max_pixels:,} pixels, --max-pixels)")
    except UnidentifiedImageError:
        return None, ("image_undecodable", f"{len(data):,} bytes that are not a {', '.join(_FORMATS)} image")
    except _HOSTILE as error:
        message = str(error) or type(error).__name__
        return None, ("image_truncated" if "truncated" in message.lower() else "image_undecodable", message)
    return _EXTENSIONS.get(form, form.lower()), None


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
                 decode: bool = False, carry: tuple[str, ...] = ()):
        self.root = Path(os.path.abspath(out_dir), STORE_FOLDER) if out_dir is not None else None  # None: check only, write nothing
        self._prefix = f"{self.root}/" if absolute and self.root else f"{STORE_FOLDER}/"
        self.folder, self.max_pixels, self.decode = folder, max_pixels, decode
        self.carry = carry  # source columns copied onto each written record (data_source)
        self._seen = SeenIds()
        self._folders: set[str] = set()
        self.stored = self.duplicates = 0

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
            if ref.data == b"":
                problems.append(Problem("missing_image", field, "the image's bytes are empty",
                                        "fill in the image's bytes, or remove the image and its '<image>'"))
                continue
            if ref.data is not None:
                extension, fault = sniff(ref.data, self.max_pixels, self.decode)
                if fault is not None:
                    problems.append(Problem(fault[0], field, f"inline bytes: {fault[1]}", _BYTES_FIX))
                    continue
                digest = hashlib.sha256(ref.data).hexdigest()[:32]
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
                written.append(resolved[0])
                files.append(resolved[1])
            else:
                continue
            fields.append(field)
        return written, files, fields, pending

    def keep(self, pending: list[PendingImage]) -> None:
        """Store a kept record's inline images: each distinct one once, repeats counted."""
        for image in pending:
            if not self._seen.add(image.digest):
                self.duplicates += 1
                continue
            self.stored += 1
            if self.root is not None and not os.path.exists(image.file):  # there already: an earlier run's
                self._write(image)

    def _write(self, image: PendingImage) -> None:
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
        report.stored_images, report.duplicate_images = self.stored, self.duplicates
        if self.root is not None and self.stored:
            report.image_store = str(self.root)
            _syncfs(self.root)

    def remove_leftovers(self) -> list[str]:
        return remove_leftovers(self.root) if self.root is not None and self.root.is_dir() else []
