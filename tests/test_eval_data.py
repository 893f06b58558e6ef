"""Benchmark files shaped like the public releases, built in-test; the loaders read them and reject bad ones.

The builders here are imported by the other test_eval* modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from llava_lf.evaluation.tasks import llava_bench, pope
from llava_lf.evaluation.tasks.scienceqa import scienceqa

SUBJECTS = ("natural science", "social science", "language science")


def run_cli(*argv) -> int:
    """`llava-lf eval ARGV` in this process, through `llava-lf`'s own dispatcher (which maps errors to exit codes)."""
    from llava_lf.cli import run

    return run(["eval", *map(str, argv)])


def tiny_image(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def scienceqa_problem(question: str, choices: list[str], answer: int, *, hint: str = "", image: bool = False,
                      subject: str = "natural science", grade: int = 3) -> dict:
    """One problems.json entry with the release's fields (those we do not read included)."""
    return {"question": question, "choices": choices, "answer": answer, "hint": hint,
            "image": "image.png" if image else None, "task": "closed choice", "grade": f"grade{grade}",
            "subject": subject, "topic": "topic", "category": "category", "skill": "skill",
            "lecture": "", "solution": "", "split": "test"}


def write_scienceqa(root: Path, problems: dict[str, dict], split: str = "test") -> Path:
    """problems.json, pid_splits.json and images/{split}/{pid}/image.png for the problems that have one."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({split: list(problems), "train": [], "val": []}))
    for index, (pid, problem) in enumerate(problems.items()):
        if problem["image"]:
            tiny_image(root / "images" / split / pid / problem["image"], (40 * (index % 6), 90, 160))
    return root


def many_scienceqa_problems(count: int) -> dict[str, dict]:
    """`count` varied problems (every subject, both grade bands, hints and images on and off)."""
    return {str(1000 + i): scienceqa_problem(f"Which option is number {i % 4}?", [f"option {c}" for c in range(2 + i % 3)],
                                             i % 2, hint="A hint." if i % 3 == 0 else "", image=i % 2 == 0,
                                             subject=SUBJECTS[i % 3], grade=1 + i % 12)
            for i in range(count)}


def write_llava_bench(root: Path, variant: str = "wild") -> dict[str, Path]:
    """questions / context / reference answers like llava-bench-in-the-wild (or COCO's caps_boxes), with images."""
    root.mkdir(parents=True, exist_ok=True)
    images = ["001.jpg", "002.jpg"]
    for index, name in enumerate(images):
        tiny_image(root / "images" / name, (30 + 100 * index, 120, 60))
    questions = [
        {"question_id": 0, "image": "001.jpg", "text": "What colour is the ball?", "category": "conv"},
        {"question_id": 1, "image": "001.jpg", "text": "Describe the photo in detail.", "category": "detail"},
        {"question_id": 2, "image": "002.jpg", "text": "Why might the dog be wet?", "category": "complex"},
        {"question_id": 3, "image": "002.jpg", "text": "How many dogs are there?", "category": "conv"},
        {"question_id": 4, "image": "002.jpg", "text": "What could happen next?", "category": "complex"},
    ]
    if variant == "wild":
        contexts = [{"id": "001", "image": "001.jpg", "caption": "A red ball on green grass."},
                    {"id": "002", "image": "002.jpg", "caption": "A wet brown dog beside a lake."}]
    else:
        contexts = [{"id": "001", "image": "001.jpg", "captions": ["A red ball.", "A ball on grass."],
                     "instances": [{"category": "sports ball", "bbox": [0.1, 0.2, 0.3, 0.4]}]},
                    {"id": "002", "image": "002.jpg", "captions": ["A dog.", "A dog by a lake."],
                     "instances": [{"category": "dog", "bbox": [0.2, 0.2, 0.8, 0.9]}]}]
    references = [{"question_id": q["question_id"], "text": f"Reference answer {q['question_id']}.",
                   "answer_id": f"ref{q['question_id']}", "model_id": "gpt-4-0314", "metadata": {}} for q in questions]
    paths = {"questions": root / "questions.jsonl", "contexts": root / "context.jsonl", "answers": root / "answers_gpt4.jsonl"}
    for key, rows in (("questions", questions), ("contexts", contexts), ("answers", references)):
        paths[key].write_text("".join(json.dumps(row) + "\n" for row in rows))
    paths["images"] = root / "images"
    return paths


def write_pope(root: Path, splits: dict[str, list[str]]) -> Path:
    """coco_pope_{split}.json (one JSON object per line, as POPE ships them) with the given labels."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    for split, labels in splits.items():
        rows = [{"question_id": i + 1, "image": f"COCO_val2014_{i % 2:012d}.jpg",
                 "text": f"Is there a {'dog' if i % 2 else 'cat'} in the image?", "label": label}
                for i, label in enumerate(labels)]
        (annotations / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i in range(2):
        tiny_image(root / "val2014" / f"COCO_val2014_{i:012d}.jpg", (90 * i, 90, 90))
    return annotations


def write_predictions(path: Path, answers: dict[str, str], model_id: str = "hand-written") -> Path:
    path.write_text("".join(json.dumps({"question_id": qid, "prompt": "", "text": text, "model_id": model_id}) + "\n"
                            for qid, text in answers.items()))
    return path


# The loaders on these files ----------------------------------------------------------------------

def test_scienceqa_loader_builds_the_llava_prompt_and_image_paths(tmp_path):
    root = write_scienceqa(tmp_path, {
        "7": scienceqa_problem("Which is a mammal?", ["frog", "whale"], 1, hint="Think about milk.", image=True),
        "8": scienceqa_problem("Which word rhymes?", ["cat", "dog", "hat"], 2, subject="language science", grade=9)})
    problems = scienceqa.load_problems(root, "test")
    requests = scienceqa.prediction_requests(problems, root / "images", "test")
    assert requests[0].question == ("Which is a mammal?\nContext: Think about milk.\nOptions: (A) frog (B) whale\n"
                                    "Answer with the option's letter from the given choices directly.")
    assert requests[0].image == root / "images" / "test" / "7" / "image.png"
    assert requests[1].question.startswith("Which word rhymes?\nContext: N/A\nOptions: (A) cat (B) dog (C) hat")
    assert requests[1].image is None
    assert problems[0].groups == ["all", "NAT", "TXT", "IMG", "G1-6"]
    assert problems[1].groups == ["all", "LAN", "NO", "G7-12"]


def test_scienceqa_loader_names_the_bad_record_and_the_missing_image(tmp_path):
    bad = scienceqa_problem("Q?", ["a", "b"], 0)
    del bad["subject"]
    root = write_scienceqa(tmp_path / "a", {"42": bad})
    with pytest.raises(scienceqa.LlavaLfError, match="problem 42 lacks subject"):
        scienceqa.load_problems(root)
    with pytest.raises(scienceqa.LlavaLfError, match="split 'val2' not in"):
        scienceqa.load_problems(root, "val2")
    root = write_scienceqa(tmp_path / "b", {"5": scienceqa_problem("Q?", ["a", "b"], 0, image=True)})
    (root / "images" / "test" / "5" / "image.png").unlink()
    with pytest.raises(scienceqa.LlavaLfError, match=r"1 image\(s\) missing .*test/5/image.png"):
        scienceqa.prediction_requests(scienceqa.load_problems(root), root / "images", "test")


@pytest.mark.parametrize("variant", ["wild", "coco"])
def test_llava_bench_loader_joins_questions_contexts_and_references(tmp_path, variant):
    paths = write_llava_bench(tmp_path, variant)
    items = llava_bench.load_bench(paths["questions"], paths["contexts"], paths["answers"])
    assert [item.question_id for item in items] == ["0", "1", "2", "3", "4"]
    assert items[2].reference == "Reference answer 2."
    body = llava_bench.judge_messages(items[0], "It is red.")[1]["content"]
    # The published order: context, question, the reference as Assistant 1, the candidate as Assistant 2.
    order = [body.index(part) for part in ("[Context]", "[Question]", "Reference answer 0.", "It is red.", "[System]")]
    assert order == sorted(order)
    assert ("sports ball: [0.1, 0.2, 0.3, 0.4]" in body) == (variant == "coco")
    assert ("bounding boxes" in body) == (variant == "coco")


def test_llava_bench_loader_lists_every_join_problem(tmp_path):
    paths = write_llava_bench(tmp_path)
    lines = paths["answers"].read_text().splitlines()
    paths["answers"].write_text("\n".join(lines[1:]) + "\n")  # no reference for question 0
    with open(paths["questions"], "a") as handle:
        handle.write(json.dumps({"question_id": 9, "image": "003.jpg", "text": "?", "category": "chat"}) + "\n")
    with pytest.raises(llava_bench.LlavaLfError) as error:
        llava_bench.load_bench(paths["questions"], paths["contexts"], paths["answers"])
    message = str(error.value)
    assert "question 0: no reference answer" in message
    assert "question 9: category 'chat'" in message and "question 9: image '003.jpg' has no record" in message


def test_pope_loader_keys_questions_by_split(tmp_path):
    annotations = write_pope(tmp_path, {"random": ["yes", "no"], "adversarial": ["no"]})
    questions = pope.load_pope(annotations)
    assert [q.key for q in questions] == ["adversarial/1", "random/1", "random/2"]
    requests = pope.prediction_requests(questions, tmp_path / "val2014")
    assert requests[0].question == "Is there a cat in the image?\nAnswer the question using a single word or phrase."
    (annotations / "coco_pope_popular.json").write_text(json.dumps({"question_id": 1, "image": "x.jpg",
                                                                    "text": "?", "label": "maybe"}) + "\n")
    with pytest.raises(pope.LlavaLfError, match="record 1 has label 'maybe'; use yes or no"):
        pope.load_pope(annotations)
