"""Write the synthetic picture set to disk: images, COCO annotations, LLaVA JSON, held-out questions."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_lf.formats import VICUNA_V1_SYSTEM

from .shapes import KINDS, Question, Scene, captions, grid_text, make_scenes, questions, render

CAPTION_PROMPTS = (
    "Describe the image briefly.",
    "Give a short caption for this picture.",
    "What is shown in the image?",
)


@dataclass(frozen=True)
class DemoData:
    root: Path
    image_dir: Path
    caption_json: Path  # stage 1, LLaVA JSON
    instruct_json: Path  # stage 2, LLaVA JSON
    test_questions: Path  # held-out JSONL
    text_corpus: Path  # language-model warm-up, JSONL {"text": ...}


def language_corpus(scenes: list[Scene], rng: random.Random) -> list[str]:
    """Text the tiny language model learns before it ever sees a picture, as Vicuna knew language.

    Each scene is written as its nine cell words (`[red circle][empty]...`) followed by either a caption,
    in the stage-1 layout (`<s>` grid caption newline), or one question and answer in the stage-2 Vicuna
    layout; the host appends `</s>` to every document. The model thus learns to read a grid of words,
    and stages 1 and 2 only have to teach the projector to write each picture patch as its cell's word.
    """
    documents = []
    for scene in scenes:
        grid = grid_text(scene)
        documents.append(f"<s>{grid}{rng.choice(captions(scene))}\n")
        for qa in questions(scene, rng):
            documents.append(f"<s>{VICUNA_V1_SYSTEM} USER: {grid}\n{qa.question} ASSISTANT: {qa.answer}")
    rng.shuffle(documents)
    return documents


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def _write_coco(path_prefix: Path, scenes: list[Scene]) -> None:
    images = [{"id": s.image_id, "file_name": s.file_name, "width": s.size, "height": s.size} for s in scenes]
    categories = [{"id": index + 1, "name": kind, "supercategory": "shape"} for index, kind in enumerate(KINDS)]
    caption_items, instance_items = [], []
    for scene in scenes:
        for text in captions(scene):
            caption_items.append({"id": len(caption_items) + 1, "image_id": scene.image_id, "caption": text})
        for shape in scene.shapes:
            x, y, w, h = shape.box
            instance_items.append({
                "id": len(instance_items) + 1, "image_id": scene.image_id, "category_id": KINDS.index(shape.kind) + 1,
                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "color": shape.color,
            })
    _write_json(path_prefix.with_name(f"captions_{path_prefix.name}.json"),
                {"images": images, "annotations": caption_items})
    _write_json(path_prefix.with_name(f"instances_{path_prefix.name}.json"),
                {"images": images, "annotations": instance_items, "categories": categories})


def _conversation(qas: list[Question]) -> list[dict[str, str]]:
    turns = []
    for index, qa in enumerate(qas):
        prefix = "<image>\n" if index == 0 else ""
        turns += [{"from": "human", "value": prefix + qa.question}, {"from": "gpt", "value": qa.answer}]
    return turns


def write_demo_data(root: Path, n_train: int, n_test: int, image_size: int, seed: int,
                    n_text: int | None = None, small_share: float = 0.0) -> DemoData:
    """Generate train and held-out scenes; every file the demo's later steps read.

    The language model's text comes from `n_text` further scenes (default 4 x n_train) that are never drawn:
    about 1,500 warm-up steps, the point at which the tiny LM learns to look cells up (measured). Text has no
    sizes, so it is the same whatever `image_size` and `small_share` (the share of shapes drawn small) are.
    """
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    train = make_scenes(n_train, seed, image_size, small_share=small_share)
    test = make_scenes(n_test, seed + 1, image_size, first_id=n_train, small_share=small_share)
    for scene in train + test:
        render(scene).save(image_dir / scene.file_name)
    _write_coco(root / "train", train)
    _write_coco(root / "test", test)

    rng = random.Random(seed + 2)
    caption_records, instruct_records = [], []
    for scene in train:
        for text in rng.sample(captions(scene), 2):
            caption_records.append({
                "id": f"cap-{scene.image_id}-{len(caption_records)}", "image": scene.file_name,
                "conversations": [{"from": "human", "value": f"{rng.choice(CAPTION_PROMPTS)}\n<image>"},
                                  {"from": "gpt", "value": text}],
            })
        qas = questions(scene, rng)
        # One question per sample: in one conversation, earlier answers would give later ones away
        # ("Where is the red circle?" names the circle's colour), and the model would learn to read text.
        for qa in qas:
            instruct_records.append({"id": f"qa-{scene.image_id}-{qa.qtype}", "image": scene.file_name,
                                     "conversations": _conversation([qa])})

    data = DemoData(root, image_dir, root / "shapes_caption.json", root / "shapes_instruct.json",
                    root / "shapes_test_questions.jsonl", root / "shapes_text.jsonl")
    _write_json(data.caption_json, caption_records)
    _write_json(data.instruct_json, instruct_records)
    qrng = random.Random(seed + 3)
    with open(data.test_questions, "w", encoding="utf-8") as handle:
        for scene in test:
            for qa in questions(scene, qrng):
                record = asdict(qa)
                if not small_share:  # the 1.5 demo's file as it always was
                    del record["small"]
                handle.write(json.dumps({**record, "image": scene.file_name}) + "\n")
    text_scenes = make_scenes(4 * n_train if n_text is None else n_text, seed + 4, image_size, first_id=n_train + n_test)
    corpus = language_corpus(text_scenes, random.Random(seed + 5))
    with open(data.text_corpus, "w", encoding="utf-8") as handle:
        for text in corpus:
            handle.write(json.dumps({"text": text}) + "\n")
    return data
