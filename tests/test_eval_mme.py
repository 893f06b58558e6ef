"""MME through `llava-lf eval mme {predict,score}`: a stand-in MME_Benchmark_release_version tree with both
layouts and the two-space quirk, LLaVA's question and answer files (each question_id twice), and
convert_answer_to_mme.py + calculation.py re-implemented here from their description, compared on adversarial
answers (tabs and line breaks included); partial and reordered files; one tiny-model predict that resumes."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from llava_lf.cli import run
from llava_lf.evaluation.tasks import TASKS
from llava_lf.evaluation.tasks.mme.mme import read_yes_no

SHORT = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no."

# subtask -> image path under the tree -> [(question as the GT file spells it, GT)]
TREE = {
    "artwork": {"images/14777.jpg": [("Does this artwork belong to the type of religious?", "Yes"),
                                     ("Does this artwork belong to the type of landscape?", "No")],
                "images/10002.jpg": [("Is this artwork created by pinturicchio?", "No"),
                                     ("Is this artwork created by da vinci?", "Yes")]},
    "posters": {"images/tt0048545.jpg": [("Is this movie originated from the country or region of usa?", "Yes"),
                                         ("Is this movie originated from the country or region of china?", "No")],
                "images/tt0063442.jpg": [("Is this movie titled planet of the apes (1968)?", "Yes"),
                                         ("Is this movie titled the graduate (1967)?", "No")]},
    "existence": {"000000006040.jpg": [("Is there a train in this image?", "Yes"),
                                       ("Is there a bed in this image?", "No")],
                  "000000061418.jpg": [("Is there a chair in this image?", "Yes"),
                                       ("Is there a kite in this image?", "No")]},
    "color": {"000000008277.jpg": [("Is there a yellow plate in the image? ", "Yes"),  # two spaces in the GT
                                   ("Is there a blue plate in the image?", "No")]},
    "code_reasoning": {"0020.png": [("The output of the code is 5 in the image?", "No"),
                                    ("The output of the code is 4 in the image?", "Yes")],
                       "0021.png": [("Is a c++ code shown in the picture?", "No"),
                                    ("Is a python code shown in the picture?", "Yes")]},
}
# One raw answer per question, in question-file order: every reading rule and the line-format breakers.
ANSWERS = ["Eyes", "Snow", "None", "Yesterday", "Y", "Noon", "Yes", "Not sure", "yes\tno", "Nah", "No\nYes",
           "Maybe", "", "İyes", "YES.", "no, it is not", "nO", "Yes\r"]


def _entries():
    """(subtask, question_id, GT file, GT question, GT answer, LLaVA text) in question-file order."""
    for subtask, images in TREE.items():
        for image, pairs in images.items():
            for question, truth in pairs:
                text = question.rstrip() + "\n" + SHORT
                yield subtask, f"{subtask}/{image}", Path(image).stem + ".txt", f"{question} {YES_NO}", truth, text


def _write_tree(root: Path) -> Path:
    tree = root / "MME_Benchmark_release_version"
    lines = defaultdict(list)
    for _, qid, gt_file, gt_question, truth, _ in _entries():
        image = tree / qid
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (len(qid) * 9 % 255, 90, 160)).save(image)
        folder = image.parent.parent / "questions_answers_YN" if image.parent.name == "images" else image.parent
        lines[folder / gt_file].append(f"{gt_question}\t{truth}\n")
    for path, content in lines.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(content), encoding="utf-8")
    questions = [{"question_id": qid, "image": qid, "text": text, "category": subtask}
                 for subtask, qid, *_, text in _entries()]
    (root / "llava_mme.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    return tree


def _write_answers(root: Path, answers=ANSWERS, order=None, skip=()) -> list[dict]:
    entries = list(_entries())
    rows = [{"question_id": e[1], "prompt": e[5], "text": answers[i], "answer_id": f"id{i}",
             "model_id": "llava-v1.5-13b", "metadata": {}} for i, e in enumerate(entries) if i not in skip]
    rows = rows if order is None else [rows[i] for i in order]
    (root / "mme.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def _score(root: Path, *extra) -> int:
    return run(["eval", "mme", "score", "--predictions", str(root / "mme.jsonl"), "--questions",
                str(root / "llava_mme.jsonl"), "--data", str(root / "MME_Benchmark_release_version"),
                "--out-dir", str(root / "out"), *extra])


# The official pipeline, re-implemented from its description (EVAL_TABLE.md, MME) -----------------------

def reference_convert(rows: list[dict], tree: Path) -> dict[str, str]:
    """convert_answer_to_mme.py: GT keyed by (subtask, GT file, question); one line per answer, answer order."""
    truth = {}
    for folder in (p for p in tree.iterdir() if p.is_dir()):
        answers_dir = folder / "questions_answers_YN" if (folder / "images").exists() else folder
        for gt in answers_dir.glob("*.txt"):
            for line in gt.read_text().splitlines():
                question, answer = line.strip().split("\t")
                truth[folder.name, gt.name, question] = answer
    files = defaultdict(str)
    for row in rows:
        subtask, name = row["question_id"].split("/")[0], row["question_id"].split("/")[-1].split(".")[0] + ".txt"
        prompt = row["prompt"]
        if SHORT in prompt:
            prompt = prompt.replace(SHORT, "").strip()
        if YES_NO not in prompt:
            prompt += " " + YES_NO
            if (subtask, name, prompt) not in truth:
                prompt = prompt.replace(" " + YES_NO, "  " + YES_NO)
        files[subtask] += "\t".join([name, prompt, truth[subtask, name, prompt], row["text"]]) + "\n"
    return dict(files)


def reference_reading(prediction: str) -> str:
    if prediction in ("yes", "no"):
        return prediction
    return "yes" if "yes" in prediction[:4] else "no" if "no" in prediction[:4] else "other"


def reference_calculation(results_dir: Path) -> dict[str, float]:
    """calculation.py: lines read with universal newlines, paired by position, four tab-separated fields (the
    prediction keeps its newline); score = 100 acc + 100 acc+."""
    scores = {}
    for path in sorted(results_dir.glob("*.txt")):
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
        assert len(lines) % 2 == 0
        right = images_right = 0
        for pair in zip(lines[0::2], lines[1::2]):
            marks = []
            for line in pair:
                _, _, truth, prediction = line.split("\t")  # ValueError on a tab inside an answer
                marks.append(reference_reading(prediction.lower()) == truth.lower())
            right += sum(marks)
            images_right += all(marks)
        scores[path.stem] = 100 * right / len(lines) + 100 * images_right / (len(lines) // 2)
    return scores


@pytest.mark.parametrize(("answer", "reading"), [
    ("Eyes", "yes"), ("Yesterday", "yes"), ("Snow", "no"), ("Noon", "no"), ("None", "no"), ("Not sure", "no"),
    ("Y", "other"), ("Nah", "other"), ("Maybe", "other"), ("", "other"), ("Yes.", "yes"), ("NO", "no"),
    ("The answer is yes", "other"), ("İyes", "other"), ("I know", "other"), ("A no", "no"), ("Yes, no", "yes"), ("nyes", "yes"),
])
def test_yes_no_reading_is_calculation_py_s(answer, reading):
    assert read_yes_no(answer) == reading == reference_reading(answer.lower() + "\n")


def test_scores_and_eval_tool_files_equal_the_official_pipeline(tmp_path):
    tree = _write_tree(tmp_path)
    rows = _write_answers(tmp_path)
    assert _score(tmp_path) == 0
    payload = json.loads((tmp_path / "out" / "mme.json").read_text(encoding="utf-8"))
    written = tmp_path / "out" / "mme_eval_tool"
    official = reference_calculation(written)
    assert {name: task["score"] for name, task in payload["tasks"].items()} == pytest.approx(official)
    perception = sum(v for k, v in official.items() if k != "code_reasoning")
    assert payload["perception"] == pytest.approx(perception)
    assert payload["cognition"] == pytest.approx(official["code_reasoning"])
    assert TASKS["mme"].column.headline(payload) == payload["perception"] and TASKS["mme"].column.digits == 1
    # The converter's files, byte for byte, once its tabs and line breaks are spaces (calculation.py's format).
    flat = [dict(r, text=r["text"].replace("\t", " ").replace("\n", " ").replace("\r", " ")) for r in rows]
    expected = reference_convert(flat, tree)
    assert {p.stem: p.read_text(encoding="utf-8") for p in written.glob("*.txt")} == expected
    assert "000000008277.txt\tIs there a yellow plate in the image?  Please answer yes or no.\tYes\t" \
        in expected["color"]
    # On the raw answers the official pipeline breaks: the converter's line has five fields or spans two lines.
    raw = tmp_path / "raw"
    raw.mkdir()
    for subtask, text in reference_convert(rows, tree).items():
        (raw / f"{subtask}.txt").write_text(text, encoding="utf-8")
    with pytest.raises((ValueError, AssertionError)):
        reference_calculation(raw)
    markdown = (tmp_path / "out" / "mme.md").read_text(encoding="utf-8")
    assert "tab or line break (3)" in markdown and "1510.7" in markdown
    assert sorted(payload["absent_subtasks"]) == sorted(["count", "position", "celebrity", "scene", "landmark",
                                                         "OCR", "commonsense_reasoning", "numerical_calculation",
                                                         "text_translation"])


def test_a_reordered_file_pairs_by_image_and_says_where_position_pairing_differs(tmp_path):
    _write_tree(tmp_path)
    _write_answers(tmp_path)
    assert _score(tmp_path) == 0
    in_order = json.loads((tmp_path / "out" / "mme.json").read_text())
    order = [0, 2, 1, 3] + list(range(4, 18))  # artwork: 14777 q1, 10002 q1, 14777 q2, 10002 q2
    _write_answers(tmp_path, order=order)
    assert _score(tmp_path) == 0
    reordered = json.loads((tmp_path / "out" / "mme.json").read_text())
    assert reordered["tasks"] == in_order["tasks"]
    assert reordered["position_pair_mismatches"] == {"artwork": 2}
    assert "pairs by position; we pair by image" in (tmp_path / "out" / "mme.md").read_text()


def test_unanswered_questions_refused_or_counted_wrong(tmp_path, capsys):
    _write_tree(tmp_path)
    _write_answers(tmp_path, skip={6})  # posters' first question ("Yes", right)
    assert _score(tmp_path) == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert _score(tmp_path, "--allow-partial") == 0
    posters = json.loads((tmp_path / "out" / "mme.json").read_text())["tasks"]["posters"]
    # "Not sure" for the second (GT No) is right: one of two questions, no image with both.
    assert (posters["acc"], posters["acc_plus"], posters["score"], posters["unanswered"]) == (50.0, 0.0, 50.0, 1)
    lines = (tmp_path / "out" / "mme_eval_tool" / "posters.txt").read_text().splitlines()
    assert len(lines) == 3 and lines[-1] == "tt0063442.txt\tIs this movie titled the graduate (1967)? Please answer yes or no.\tNo\tNot sure"


def test_a_question_without_ground_truth_is_named(tmp_path, capsys):
    tree = _write_tree(tmp_path)
    _write_answers(tmp_path)
    (tree / "existence" / "000000061418.txt").write_text("Is there a chair in this image? Please answer yes or no.\tYes\n")
    assert _score(tmp_path) == 2
    error = capsys.readouterr().err
    assert "existence/000000061418.jpg" in error and "kite" in error


@pytest.mark.host  # predict loads the host's template
def test_predict_answers_repeated_ids_and_resumes(tmp_path, tiny_llava):
    tree = _write_tree(tmp_path)
    out = tmp_path / "answers.jsonl"

    def predict(limit: int) -> int:
        return run(["eval", "mme", "predict", "--model", str(tiny_llava), "--questions", str(tmp_path / "llava_mme.jsonl"),
                    "--image-folder", str(tree), "--out", str(out), "--limit", str(limit), "--max-new-tokens", "4",
                    "--device", "cpu", "--batch-size", "2"])

    assert predict(4) == 0
    first = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    questions = [json.loads(line) for line in (tmp_path / "llava_mme.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["prompt"]) for r in first] == [(q["question_id"], q["text"]) for q in questions[:4]]
    assert first[0]["question_id"] == first[1]["question_id"] == "artwork/images/14777.jpg"
    assert all({"text", "answer_id", "model_id", "metadata"} <= row.keys() for row in first)
    assert predict(6) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and [json.loads(line) for line in lines[:4]] == first
    assert _score_partial(tmp_path, out) == 0
    assert len((tmp_path / "out" / "mme_eval_tool" / "artwork.txt").read_text().splitlines()) == 4


def _score_partial(root: Path, predictions: Path) -> int:
    return run(["eval", "mme", "score", "--predictions", str(predictions), "--questions", str(root / "llava_mme.jsonl"),
                "--data", str(root / "MME_Benchmark_release_version"), "--out-dir", str(root / "out"),
                "--allow-partial"])
