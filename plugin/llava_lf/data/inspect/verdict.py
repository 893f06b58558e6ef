"""Would `llava-lf convert` reject this record, and why: the converter's own checks, run record by record, so
the reasons and messages are the converter's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llava_lf.data.convert.ids import SeenIds
from llava_lf.data.convert.paths import ImageFolder
from llava_lf.data.convert.report import Problem
from llava_lf.data.convert.validate import Normalised, claim_output_id, normalise, record_id, record_images


@dataclass(slots=True)
class Verdict:
    record_id: str | None
    images: list[str]  # as written in the record
    files: list[str | None] | None  # each image's absolute path (None: refused); None when paths are not checked
    normalised: Normalised | None  # the turns as the converter would write them (None when rejected)
    problems: list[Problem]
    converted: bool  # a line of a dataset `llava-lf convert` wrote


def _as_source(record: dict) -> dict:
    """A converted line as the LLaVA record it came from (`images` -> `image`)."""
    record = {key: value for key, value in record.items() if key != "images"} | {"image": record["images"]}
    if record["image"] == []:
        del record["image"]
    return record


class ConverterChecks:
    def __init__(self, image_folder: Path | None, dataset_dir: Path, stage_one: bool):
        # Without an image folder a LLaVA file's paths are not checked (the card says so).
        self._folder = ImageFolder(image_folder, None) if image_folder is not None else None
        self._dataset_dir = os.path.realpath(dataset_dir)
        self._stage_one = stage_one  # --template llava_plain: the converter's stage-1 shape check
        self._output_ids = SeenIds()

    def check(self, record: object, index: int) -> Verdict:
        problems: list[Problem] = []
        # A line of a dataset `llava-lf convert` wrote (an `images` list, no `image`): read back with the converter's
        # validator, its paths from the dataset's folder (the host's default `media_dir`).
        converted = type(record) is dict and "images" in record and "image" not in record
        if converted:
            record = _as_source(record)
        rid = record_id(record, problems)
        images = record_images(record, problems)
        normalised = normalise(record, images, self._stage_one, problems)
        files: list[str | None] | None = None
        if converted or self._folder is not None:
            files = []
            for position, path in enumerate(images or ()):
                field = "image" if type(record["image"]) is str else f"image[{position}]"
                files.append(self._dataset_file(path, field, problems) if converted
                             else self._source_file(path, field, problems))
        claim_output_id(self._output_ids, record, rid, index, problems)  # the converter's duplicate rule
        return Verdict(rid, images or [], files, normalised if not problems else None, problems, converted)

    def _source_file(self, path: str, field: str, problems: list[Problem]) -> str | None:
        """A LLaVA record's image path as a file in the image folder, or None with the converter's problem."""
        resolved = self._folder.resolve(path, field, problems)
        return resolved[1] if resolved is not None else None

    def _dataset_file(self, path: str, field: str, problems: list[Problem]) -> str | None:
        full = os.path.normpath(path if os.path.isabs(path) else os.path.join(self._dataset_dir, path))
        if os.path.isfile(full):
            return full
        problems.append(Problem("missing_image", field, f"{path!r} does not exist relative to the dataset's folder "
                                f"({full})", "convert the source again, or keep the dataset next to its images"))
        return None
