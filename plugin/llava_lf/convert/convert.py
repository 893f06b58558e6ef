"""Convert LLaVA JSON records into the host's sharegpt form, rejecting bad records with reasons.

Each record is normalised the way the original LLaVA code reads it: `<image>` moved to the front of
the first human turn as `<image>\\n`, a leading gpt turn dropped, `image` as a string or a list.
Nothing is dropped silently: every rejected record is returned as a `Rejection` and reported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN, ROLE_SYSTEM, LlavaTurn, SharegptRecord, dataset_info_entry


@dataclass(frozen=True)
class Rejection:
    index: int
    id: str | None
    reason: str
    field: str
    message: str
    fix: str


class RecordError(Exception):
    def __init__(self, reason: str, field: str, message: str, fix: str):
        super().__init__(message)
        self.reason, self.field, self.message, self.fix = reason, field, message, fix


@dataclass
class ConversionReport:
    source: str
    output: str
    total: int = 0
    written: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def counts_by_reason(self) -> Counter[str]:
        return Counter(rejection.reason for rejection in self.rejections)

    def summary(self) -> str:
        lines = [f"{self.source}: {self.total} records, {self.written} written to {self.output}, "
                 f"{len(self.rejections)} rejected"]
        lines += [f"  {reason}: {count}" for reason, count in self.counts_by_reason().most_common()]
        return "\n".join(lines)


def _turns(record: dict) -> list[LlavaTurn]:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError("malformed", "conversations", "missing or not a non-empty list",
                          "give each record a 'conversations' list of {from, value} turns")
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or not isinstance(turn.get("value"), str):
            raise RecordError("malformed", f"conversations[{position}]", "a turn needs string 'from' and 'value'",
                              "write each turn as {\"from\": \"human\"|\"gpt\", \"value\": \"...\"}")
    return [{"from": turn["from"], "value": turn["value"]} for turn in turns]


def _images(record: dict) -> list[str]:
    image = record.get("image")
    if image is None:
        return []
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not all(isinstance(item, str) and item for item in images):
        raise RecordError("malformed", "image", "must be a path or a list of paths",
                          "write 'image' as \"folder/file.jpg\" or a list of such strings")
    return images


def _check_roles(turns: list[LlavaTurn]) -> list[LlavaTurn]:
    system = turns[:1] if turns[0]["from"] == ROLE_SYSTEM else []
    turns = turns[len(system):]
    if turns and turns[0]["from"] == ROLE_GPT:  # the original code drops a leading gpt turn too
        turns = turns[1:]
    if len(turns) < 2 or len(turns) % 2:
        raise RecordError("roles", "conversations", f"{len(turns)} turns after a leading gpt turn is dropped; "
                          "need human/gpt pairs", "end every conversation with a gpt answer")
    for position, turn in enumerate(turns):
        expected = ROLE_HUMAN if position % 2 == 0 else ROLE_GPT
        if turn["from"] != expected:
            raise RecordError("roles", f"conversations[{position}].from", f"got {turn['from']!r}, expected {expected!r}",
                              "alternate human and gpt turns, starting with human")
        if not turn["value"].strip():
            raise RecordError("empty_turn", f"conversations[{position}].value", "empty text",
                              "remove the record or fill the turn")
    return system + turns


def _place_image_tokens(turns: list[LlavaTurn], n_images: int) -> None:
    """Check placeholder counts and move a single image's placeholder to the front, as LLaVA does."""
    first = next(index for index, turn in enumerate(turns) if turn["from"] == ROLE_HUMAN)
    for position, turn in enumerate(turns):
        if turn["from"] == ROLE_GPT and IMAGE_PLACEHOLDER in turn["value"]:
            raise RecordError("image_in_answer", f"conversations[{position}].value", "an answer contains '<image>'",
                              "remove the literal '<image>' from the answer text")
    found = sum(turn["value"].count(IMAGE_PLACEHOLDER) for turn in turns)
    if n_images == 1 and found <= 1:
        text = turns[first]["value"].replace(IMAGE_PLACEHOLDER, "").strip()
        turns[first]["value"] = f"{IMAGE_PLACEHOLDER}\n{text}"
    elif found != n_images:
        raise RecordError("placeholder_count", "conversations", f"{found} '<image>' placeholders for {n_images} images",
                          "put exactly one '<image>' in the human turns per image")


def _resolve_image(path: str, image_folder: Path, out_dir: Path) -> str:
    root = image_folder.resolve()
    candidate = Path(path)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise RecordError("path_escape", "image", f"{path!r} is absolute or climbs out of the image folder",
                          "give image paths relative to --image-folder")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise RecordError("path_escape", "image", f"{path!r} resolves outside the image folder (symlink?)",
                          "keep images inside --image-folder")
    if not resolved.is_file():
        raise RecordError("missing_image", "image", f"{resolved} does not exist", "fix the path or --image-folder")
    return os.path.relpath(resolved, out_dir.resolve())


def convert_record(record: object, index: int, image_folder: Path, out_dir: Path) -> SharegptRecord:
    if not isinstance(record, dict):
        raise RecordError("malformed", "<record>", f"expected an object, got {type(record).__name__}",
                          "each element of the file must be a JSON object")
    turns = _check_roles(_turns(record))
    images = _images(record)
    _place_image_tokens(turns, len(images))
    return {
        "id": str(record.get("id", index)),
        "conversations": turns,
        "images": [_resolve_image(path, image_folder, out_dir) for path in images],
    }


def convert_records(
    records: Iterable[object], image_folder: Path, out_dir: Path
) -> Iterator[SharegptRecord | Rejection]:
    """Yield a converted record or a Rejection for each input record, in order."""
    seen_ids: set[str] = set()
    for index, record in enumerate(records):
        record_id = str(record["id"]) if isinstance(record, dict) and "id" in record else None
        try:
            if record_id is not None and record_id in seen_ids:
                raise RecordError("duplicate_id", "id", f"id {record_id!r} appeared before", "give every record a unique id")
            converted = convert_record(record, index, image_folder, out_dir)
        except RecordError as error:
            yield Rejection(index, record_id, error.reason, error.field, error.message, error.fix)
            continue
        if record_id is not None:
            seen_ids.add(record_id)
        yield converted


def _write_atomically(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    os.replace(tmp, path)


def update_dataset_info(out_dir: Path, name: str, entry: dict) -> None:
    """Add or replace one entry of dataset_info.json, leaving the others untouched."""
    info_path = out_dir / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info[name] = entry
    _write_atomically(info_path, [json.dumps(info, indent=2, ensure_ascii=False)])


def read_llava_json(path: Path) -> list[object]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def convert_file(src: Path, image_folder: Path, out_dir: Path, name: str) -> ConversionReport:
    """Convert one LLaVA JSON/JSONL file to `out_dir/name.jsonl` and register it in dataset_info.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.jsonl"
    report = ConversionReport(source=str(src), output=str(output))

    def converted_lines() -> Iterator[str]:
        for item in convert_records(read_llava_json(src), image_folder, out_dir):
            report.total += 1
            if isinstance(item, Rejection):
                report.rejections.append(item)
            else:
                report.written += 1
                yield json.dumps(item, ensure_ascii=False)

    _write_atomically(output, converted_lines())
    _write_atomically(out_dir / f"{name}.rejected.jsonl", (json.dumps(asdict(r)) for r in report.rejections))
    update_dataset_info(out_dir, name, dataset_info_entry(output.name))
    return report
