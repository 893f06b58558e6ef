"""Small stand-ins for the twelve benchmarks' files, each shaped as the real one (field names, id types, layouts),
for runs through `llava-lf eval table`. Each writer returns its benchmark's
table entry: the `predict`/`score` options naming the files it wrote."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."
COLOURS = ((200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40))


def picture(path: Path, index: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # SEED's images keep no suffix, as the real ones: say the format
    Image.new("RGB", (24, 24), COLOURS[index % len(COLOURS)]).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def vqav2(root: Path) -> dict:
    ids = [262144000, 262144001, 393225000]
    rows = [{"question_id": qid, "image": f"COCO_test2015_{qid // 1000:012d}.jpg",
             "text": f"What colour is thing {n}?" + SHORT, "category": "default"} for n, qid in enumerate(ids)]
    for n, row in enumerate(rows):
        picture(root / "test2015" / row["image"], n)
    extra = {"question_id": 524289000, "image": "COCO_test2015_000000524289.jpg", "text": "Unasked?" + SHORT,
             "category": "default"}
    return {"questions": jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl", rows[:2]),
            "upload_questions": jsonl(root / "llava_vqav2_mscoco_test2015.jsonl", rows + [extra]),
            "image_folder": root / "test2015"}


def gqa(root: Path) -> dict:
    rows, annotations = [], {}
    for n, (qid, answer, structural) in enumerate((("201307251", "no", "verify"), ("20537737", "red", "query"),
                                                  ("201640614", "yes", "logical"))):
        image = f"n16131{n}"
        rows.append({"question_id": qid, "image": f"{image}.jpg", "text": f"Question {n}?" + SHORT,
                     "category": "default"})
        picture(root / "images" / f"{image}.jpg", n)
        annotations[qid] = {"question": f"Question {n}?", "answer": answer, "fullAnswer": f"It is {answer}.",
                            "isBalanced": True, "imageId": image, "entailed": [], "equivalent": [qid],
                            "types": {"structural": structural, "semantic": "attr", "detailed": "colorObj"},
                            "groups": {"global": answer, "local": f"10c-{answer}"},
                            "semantic": [{"operation": "select", "argument": "thing (1)", "dependencies": []},
                                         {"operation": "verify color", "argument": answer, "dependencies": [0]}],
                            "annotations": {"answer": {}, "question": {}, "fullAnswer": {}}}
    return {"questions": jsonl(root / "llava_gqa_testdev_balanced.jsonl", rows),
            "annotations": write_json(root / "testdev_balanced_questions.json", annotations),
            "image_folder": root / "images"}


def vizwiz(root: Path) -> dict:
    rows = [{"question_id": n, "image": f"VizWiz_test_{n:08d}.jpg",
             "text": f"What is this {n}?\nWhen the provided information is insufficient, respond with "
                     "'Unanswerable'." + SHORT, "category": "default"} for n in range(2)]
    for n, row in enumerate(rows):
        picture(root / "test" / row["image"], n)
    return {"questions": jsonl(root / "llava_test.jsonl", rows), "image_folder": root / "test"}


def scienceqa(root: Path) -> dict:
    problems = [
        {"id": "5", "image": "5/image.png", "conversations": [
            {"from": "human", "value": "<image>\nContext: A red square.\nWhich colour is the square?\nA. red\nB. blue"},
            {"from": "gpt", "value": "A"}]},
        {"id": "9", "image": "9/image.png", "conversations": [
            {"from": "human", "value": "<image>\nWhich shape is shown?\nA. circle\nB. square\nC. cross"},
            {"from": "gpt", "value": "B"}]},
        {"id": "12", "conversations": [
            {"from": "human", "value": "Context: Plants need light.\nWhat do plants need?\nA. light\nB. noise"},
            {"from": "gpt", "value": "A"}]},
    ]
    picture(root / "images" / "test" / "5" / "image.png", 0)
    picture(root / "images" / "test" / "9" / "image.png", 1)
    return {"questions": write_json(root / "llava_test_CQM-A.json", problems), "image_folder": root / "images" / "test"}


def textvqa(root: Path) -> dict:
    cases = [("003a8ae2ef43b901", "what is the brand of this camera?", "dakota"),
             ("003a8ae2ef43b901", "what is written on the strap?", "single-use"),
             ("00685bc495504d61", "what number is shown?", "3")]
    rows, data = [], []
    for n, (image_id, question, answer) in enumerate(cases):
        text = f"{question.capitalize()}\nReference OCR token: DAKOTA, DIGITAL, Single-Use" + SHORT
        rows.append({"question_id": image_id, "image": f"{image_id}.jpg", "text": text, "category": "default"})
        picture(root / "train_images" / f"{image_id}.jpg", n)
        data.append({"image_id": image_id, "question": question, "question_id": 34602 + n,
                     "answers": [answer] * 7 + ["other"] * 3, "image_classes": ["Camera"], "set_name": "val"})
    return {"questions": jsonl(root / "llava_textvqa_val_v051_ocr.jsonl", rows),
            "annotations": write_json(root / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa",
                                                                       "dataset_type": "val", "data": data}),
            "image_folder": root / "train_images"}


def pope(root: Path) -> dict:
    labels = {"adversarial": ["yes", "no"], "popular": ["no", "yes"], "random": ["yes", "no"]}
    rows, qid = [], 1
    for split, split_labels in labels.items():
        split_rows = []
        for n, label in enumerate(split_labels):
            image = f"COCO_val2014_00000031019{n}.jpg"
            picture(root / "val2014" / image, n)
            text = f"Is there a {['snowboard', 'cat'][n]} in the image?"
            split_rows.append({"question_id": n + 1, "image": image, "text": text, "label": label})
            rows.append({"question_id": qid, "image": image, "text": text + SHORT, "category": split})
            qid += 1
        jsonl(root / "coco" / f"coco_pope_{split}.json", split_rows)
    return {"questions": jsonl(root / "llava_pope_test.jsonl", rows), "annotations": root / "coco",
            "image_folder": root / "val2014"}


def mme(root: Path) -> dict:
    tree = root / "MME_Benchmark_release_version"
    questions = {"existence": [("Is there a dog in this image?", "Yes"), ("Is there a cat in this image?", "No")],
                 "artwork": [("Is this artwork by Monet?", "No"), ("Is this artwork a painting?", "Yes")]}
    rows = []
    for subtask, pairs in questions.items():
        if subtask == "artwork":
            image_rel, gt = f"{subtask}/images/14777.jpg", tree / subtask / "questions_answers_YN" / "14777.txt"
        else:
            image_rel, gt = f"{subtask}/000000006040.jpg", tree / subtask / "000000006040.txt"
        picture(tree / image_rel, len(rows))
        gt.parent.mkdir(parents=True, exist_ok=True)
        gt.write_text("".join(f"{q} Please answer yes or no.\t{a}\n" for q, a in pairs), encoding="utf-8")
        rows += [{"question_id": image_rel, "image": image_rel, "text": q + SHORT, "category": subtask}
                 for q, _ in pairs]
    return {"questions": jsonl(root / "llava_mme.jsonl", rows), "data": tree, "image_folder": tree}


def _base64_png(index: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), COLOURS[index % len(COLOURS)]).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def mmbench(root: Path, chinese: bool = False) -> dict:
    """The TSV's 14 columns; question 241's circular copy is a row of its own (index + 1,000,000, options rotated)."""
    import pandas

    question = "图中是什么颜色？" if chinese else "What colour is the square?"
    base = {"question": question, "category": "attribute_recognition", "source": "MMBench",
            "l2-category": "finegrained_perception (instance-level)", "comment": float("nan"), "split": "dev"}
    rows = [
        base | {"index": 241, "hint": float("nan"), "A": "red", "B": "blue", "C": "green", "D": float("nan"),
                "answer": "A", "image": _base64_png(0)},
        base | {"index": 1000241, "hint": float("nan"), "A": "blue", "B": "green", "C": "red", "D": float("nan"),
                "answer": "C", "image": _base64_png(0)},
        base | {"index": 37, "hint": "Look at the shape.", "A": "circle", "B": "square", "C": float("nan"),
                "D": float("nan"), "answer": "B", "image": _base64_png(1)},
    ]
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
               "l2-category", "comment", "split"]
    name = "mmbench_dev_cn_20231003.tsv" if chinese else "mmbench_dev_20230712.tsv"
    root.mkdir(parents=True, exist_ok=True)
    pandas.DataFrame(rows, columns=columns).to_csv(root / name, sep="\t", index=False)
    return {"data": root / name}


def seed(root: Path) -> dict:
    rows = [{"image": "SEED-Bench-image/1454426_2591111986", "question_id": 101669,
             "text": "How many towels are in the image?\nA. One\nB. Two\nC. Three\nD. Four" + LETTER,
             "category": "Instances Counting"},
            {"image": "SEED-Bench-video-image/v1090.png", "question_id": "v0",
             "text": "What is the action?\nA. Run\nB. Sit\nC. Jump\nD. Swim" + LETTER, "category": "Action Recognition"}]
    picture(root / "SEED-Bench-image" / "1454426_2591111986", 0)  # the real images keep no suffix
    picture(root / "SEED-Bench-video-image" / "v1090.png", 1)
    question_types = {"Scene Understanding": 1, "Instance Identity": 2, "Instance Attributes": 3,
                      "Instance Location": 4, "Instances Counting": 5, "Spatial Relation": 6,
                      "Instance Interaction": 7, "Visual Reasoning": 8, "Text Understanding": 9,
                      "Action Recognition": 10, "Action Prediction": 11, "Procedure Understanding": 12}
    questions = [{"question_id": "101669", "question_type_id": 5, "data_type": "image", "answer": "B",
                  "question": "How many towels are in the image?", "choice_a": "One", "choice_b": "Two",
                  "choice_c": "Three", "choice_d": "Four", "data_id": "1454426_2591111986"},
                 {"question_id": "v0", "question_type_id": 10, "data_type": "video", "answer": "A",
                  "question": "What is the action?", "choice_a": "Run", "choice_b": "Sit", "choice_c": "Jump",
                  "choice_d": "Swim", "data_id": "v1090.mp4", "segment": None}]
    return {"questions": jsonl(root / "llava-seed-bench.jsonl", rows),
            "annotations": write_json(root / "SEED-Bench.json", {"question_type": question_types, "questions": questions}),
            "image_folder": root}


def llava_bench(root: Path) -> dict:
    images = ["001.jpg", "002.jpg"]
    for n, image in enumerate(images):
        picture(root / "images" / image, n)
    questions = [{"question_id": n, "image": images[n % 2], "text": f"Describe picture {n}.", "category": category}
                 for n, category in enumerate(("conv", "detail", "complex"))]
    contexts = [{"id": f"{n:03d}", "image": image, "caption": f"A plain picture, colour {n}."}
                for n, image in enumerate(images)]
    answers = [{"question_id": n, "prompt": q["text"], "text": f"Reference answer {n}.", "answer_id": f"ref{n}",
                "model_id": "gpt-4-0314", "metadata": {}} for n, q in enumerate(questions)]
    return {"questions": jsonl(root / "questions.jsonl", questions), "contexts": jsonl(root / "context.jsonl", contexts),
            "answers": jsonl(root / "answers_gpt4.jsonl", answers), "image_folder": root / "images"}


def mm_vet(root: Path) -> dict:
    items = {"v1_0": {"imagename": "v1_0.png", "capability": ["ocr", "math"], "question": "What is x in the equation?",
                      "answer": "-1 <AND> -5"},
             "v1_1": {"imagename": "v1_1.png", "capability": ["rec"], "question": "What colour is the square?",
                      "answer": "red <OR> crimson"}}
    rows = []
    for n, (key, item) in enumerate(items.items()):
        picture(root / "images" / item["imagename"], n)
        rows.append({"image": item["imagename"], "text": item["question"], "category": "conv",
                     "question_id": int(key.split("_")[1])})
    return {"questions": jsonl(root / "llava-mm-vet.jsonl", rows), "data": write_json(root / "mm-vet.json", items),
            "image_folder": root / "images"}


WRITERS = {"vqav2": vqav2, "gqa": gqa, "vizwiz": vizwiz, "scienceqa": scienceqa, "textvqa": textvqa, "pope": pope,
           "mme": mme, "mmbench": mmbench, "mmbench-cn": lambda root: mmbench(root, chinese=True), "seed": seed,
           "llava-bench": llava_bench, "mm-vet": mm_vet}


def write_all(root: Path) -> dict[str, dict]:
    """Every benchmark's stand-in files under root/NAME, and its table entry (paths as strings)."""
    return {name: {key: str(value) for key, value in write(root / name).items()} for name, write in WRITERS.items()}
