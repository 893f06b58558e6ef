"""COCO caption and instance annotations -> what the text-only teacher "sees" of each image.

The teacher gets captions one a line and, for the types that use them, boxes one a line as
`category: [x1, y1, x2, y2]`, normalised to 0..1 with three decimals (COCO boxes are pixel x, y, w, h).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from llava_lf.errors import LlavaLfError

MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Box:
    category: str
    x1: float
    y1: float
    x2: float
    y2: float

    def render(self) -> str:
        return f"{self.category}: [{self.x1:.3f}, {self.y1:.3f}, {self.x2:.3f}, {self.y2:.3f}]"


@dataclass(frozen=True)
class ImageContext:
    image_id: int
    file_name: str
    captions: tuple[str, ...]
    boxes: tuple[Box, ...]

    def render(self, with_boxes: bool) -> str:
        """Captions one a line; then, if asked, a blank line and the boxes one a line."""
        text = "\n".join(self.captions)
        if with_boxes and self.boxes:
            text += "\n\n" + "\n".join(box.render() for box in self.boxes)
        return text


def _load(path: Path, kind: str) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlavaLfError(f"{kind} file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise LlavaLfError(f"{kind} file {path} is not JSON ({error}); pass a COCO {kind}_*.json file") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list) \
            or not isinstance(payload.get("annotations"), list):
        raise LlavaLfError(f"{kind} file {path}: expected an object with 'images' and 'annotations' lists "
                        f"(the COCO {kind}_*.json layout)")
    return payload


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


class _Problems(list):
    def check(self) -> None:
        if self:
            listed = "\n".join(f"  - {problem}" for problem in self[:MAX_LISTED_PROBLEMS])
            more = f"\n  ... and {len(self) - MAX_LISTED_PROBLEMS} more" if len(self) > MAX_LISTED_PROBLEMS else ""
            raise LlavaLfError(f"{len(self)} problem(s) in the annotation files:\n{listed}{more}")


def _images(payload: dict, source: str, problems: _Problems) -> dict[int, dict]:
    images = {}
    for index, image in enumerate(payload["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) \
                or not isinstance(image.get("file_name"), str):
            problems.append(f"{source} images[{index}]: needs an integer 'id' and a string 'file_name'; "
                            "fix the entry or remove it")
            continue
        images[image["id"]] = image
    return images


def _boxes(payload: dict, images: dict[int, dict], source: str, problems: _Problems) -> dict[int, list[Box]]:
    categories = {c.get("id"): c.get("name") for c in payload.get("categories", []) if isinstance(c, dict)}
    boxes: dict[int, list[Box]] = defaultdict(list)
    for index, item in enumerate(payload["annotations"]):
        where = f"{source} annotations[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object; remove it")
            continue
        image = images.get(item.get("image_id"))
        name = categories.get(item.get("category_id"))
        bbox = item.get("bbox")
        if image is None:
            problems.append(f"{where}: image_id {item.get('image_id')!r} is not in 'images'; add the image or drop "
                            "the annotation")
        elif not isinstance(name, str):
            problems.append(f"{where}: category_id {item.get('category_id')!r} is not in 'categories'; add it")
        elif not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
                  and bbox[2] >= 0 and bbox[3] >= 0):
            problems.append(f"{where}: 'bbox' must be [x, y, width, height] in pixels, got {bbox!r}")
        elif not all(isinstance(image.get(k), int | float) and image[k] > 0 for k in ("width", "height")):
            problems.append(f"{source} image {image['id']}: boxes need a positive 'width' and 'height' to be "
                            "normalised; add them to the image entry")
        else:
            x, y, w, h = bbox
            width, height = image["width"], image["height"]
            boxes[image["id"]].append(Box(name, _clamp(x / width), _clamp(y / height),
                                          _clamp((x + w) / width), _clamp((y + h) / height)))
    return boxes


def load_contexts(captions: Path, instances: Path | None) -> tuple[list[ImageContext], list[int]]:
    """Every image of the captions file with its captions (and boxes when `instances` is given), by id.

    Returns the contexts and the ids of images that have no caption (they cannot be described).
    Raises LlavaLfError listing all problems at once.
    """
    problems = _Problems()
    caption_payload = _load(captions, "captions")
    images = _images(caption_payload, captions.name, problems)
    texts: dict[int, list[str]] = defaultdict(list)
    for index, item in enumerate(caption_payload["annotations"]):
        if not isinstance(item, dict) or not isinstance(item.get("caption"), str):
            problems.append(f"{captions.name} annotations[{index}]: needs a string 'caption'; fix or remove it")
        elif item.get("image_id") not in images:
            problems.append(f"{captions.name} annotations[{index}]: image_id {item.get('image_id')!r} is not in "
                            "'images'; add the image or drop the caption")
        elif item["caption"].strip():
            texts[item["image_id"]].append(" ".join(item["caption"].split()))
    boxes: dict[int, list[Box]] = {}
    if instances is not None:
        instance_payload = _load(instances, "instances")
        # Width and height may live only in the instances file; the captions file decides which images exist.
        sizes = _images(instance_payload, instances.name, problems)
        merged = {image_id: {**sizes.get(image_id, {}), **image} for image_id, image in images.items()}
        boxes = _boxes(instance_payload, {**sizes, **merged}, instances.name, problems)
    problems.check()
    contexts, uncaptioned = [], []
    for image_id in sorted(images):
        if not texts.get(image_id):
            uncaptioned.append(image_id)
            continue
        contexts.append(ImageContext(image_id, images[image_id]["file_name"], tuple(texts[image_id]),
                                     tuple(boxes.get(image_id, ()))))
    return contexts, uncaptioned
