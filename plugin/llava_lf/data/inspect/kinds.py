"""Where a record comes from (its source) and which of LLaVA's three instruction types it is, with how the type
was told (a field, the id, the file name or the record's shape), so the card says how it knows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TYPES = ("conversation", "detail", "complex")
_ALIASES = {"conversation": "conversation", "conv": "conversation", "detail": "detail", "detailed": "detail",
            "complex": "complex", "complex_reasoning": "complex", "reasoning": "complex"}
_ID_TYPE = re.compile(r"[-_](conversation|detail|complex)\Z")  # \Z: `$` also matches before a final newline
_ID_SOURCE = re.compile(r"([A-Za-z]+)[-_:]")  # "GCC_train_0025", "cap-12-0", "coco-7": a letters-only prefix
_FILE_TYPES = (("conversation_58k", "conversation"), ("detail_23k", "detail"), ("complex_reasoning_77k", "complex"))
_MIXED_FILES = ("llava_instruct_150k", "llava_instruct_158k")

# The instructions LLaVA's detailed-description samples ask (the paper's list and the released file's),
# compared lower-case without the final full stop.
DETAIL_INSTRUCTIONS = frozenset(text.lower() for text in (
    "Describe the following image in detail", "Provide a detailed description of the given image",
    "Give an elaborate explanation of the image you see", "Share a comprehensive rundown of the presented image",
    "Offer a thorough analysis of the image", "Explain the various aspects of the image before you",
    "Clarify the contents of the displayed image with great detail",
    "Characterize the image using a well-detailed description",
    "Break down the elements of the image in a detailed manner",
    "Walk through the important details of the image", "Portray the image with a rich, descriptive narrative",
    "Narrate the contents of the image with precision", "Analyze the image in a comprehensive and detailed manner",
    "Illustrate the image through a descriptive explanation", "Examine the image closely and share its details",
    "Write an exhaustive depiction of the given image", "What do you see happening in this image?",
    "Can you elaborate on the elements of the picture provided?", "What do you think is going on in this snapshot?",
    "Explain the visual content of the image in great detail", "What is this photo about?",
    "Can you describe the main features of this image for me?", "What are the key elements in this picture?",
    "Write a detailed description of the given image",
))


@dataclass(frozen=True)
class TypeRule:
    """How the records of one file get their type when they do not say it themselves."""

    file_type: str | None = None  # every record of the file has this type
    by_shape: bool = False  # llava_instruct_150k: told apart by the record's shape

    @classmethod
    def for_file(cls, path: Path) -> TypeRule:
        name = path.name.lower()
        for stem, kind in _FILE_TYPES:
            if stem in name:
                return cls(file_type=kind)
        return cls(by_shape=any(stem in name for stem in _MIXED_FILES))


def record_type(record: dict, pairs: int, first_question: str, rule: TypeRule) -> tuple[str, str]:
    """(type, how it was told): one of TYPES or "unknown"; the first rule that applies wins. In
    llava_instruct_150k, which mixes the three, several pairs is a conversation, one pair asking a detail
    instruction a detailed description, any other single pair complex reasoning."""
    value = record.get("type")
    if type(value) is str and value.lower() in _ALIASES:
        return _ALIASES[value.lower()], "type field"
    rid = record.get("id")
    if type(rid) is str and (match := _ID_TYPE.search(rid)):
        return match.group(1), "id suffix"
    if rule.file_type is not None:
        return rule.file_type, "file name"
    if rule.by_shape and pairs:
        if pairs > 1:
            return "conversation", "shape"
        question = first_question.lower().rstrip(". ")
        return ("detail" if question in DETAIL_INSTRUCTIONS else "complex"), "shape"
    return "unknown", "none"


def record_source(record: dict, images: list[str]) -> str:
    """A `source` field (`data_source` in parquet sets), else the image's top folder (coco, gqa, ...), else a
    letters-only id prefix."""
    value = record.get("source") or record.get("data_source")
    if type(value) is str and value:
        return value
    if images:
        folder, sep, _ = images[0].partition("/")
        if sep and not folder.isdigit():  # LCS-558K and ScienceQA shard images into numbered folders
            return folder
    rid = record.get("id")
    if type(rid) is str and (match := _ID_SOURCE.match(rid)):
        return match.group(1)
    return "images" if images else "text-only"
