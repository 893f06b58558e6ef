"""ScienceQA in LLaVA-1.5's format: `llava_test_CQM-A.json` asked as `model_vqa_science.py` asks it and scored by
`eval_science_qa.py`'s rules, both re-implemented here from their description, on a stand-in question file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.scienceqa_reference import eval_science_qa as published_rules
from test_eval_data import run_cli, tiny_image

from llava_lf.evaluation.tasks import TASKS
from llava_lf.evaluation.tasks.scienceqa.scienceqa_cqma import cqma_requests, load_cqma

pytestmark = pytest.mark.host  # the predict test runs the tiny model through the host's template

INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPTIONS = ["A", "B", "C", "D", "E"]

# (hint, question, choices, answer index, has image)
PROBLEMS = [
    ("The diagram shows a food web.", "Which organism is a producer?", ["grass", "rabbit"], 0, True),
    ("Read the text.", "Which word best describes the tone?", ["angry", "calm", "sad"], 1, False),
    ("", "Which state is highlighted?", ["Ohio", "Iowa", "Utah", "Maine"], 3, True),
    ("", "Which is a compound word?", ["sunflower", "table", "river", "apple", "green"], 0, False),
    ("Look at the magnets.", "Will these magnets attract or repel?", ["attract", "repel"], 1, True),
    ("", "What is the capital of France?", ["Rome", "Paris", "Berlin"], 1, False),
    ("A poem:\nRoses are red.", "Which word rhymes with blue?", ["new", "red", "car", "sun"], 0, True),
    ("", "Which material is a metal?", ["wood", "iron"], 1, True),
    ("The table lists four animals.", "Which animal is a bird?", ["robin", "frog", "cat", "fish", "ant"], 0, True),
    ("", "Which month comes after May?", ["April", "June", "July"], 1, False),
    ("The picture shows a plant cell.", "Which part makes food?", ["chloroplast", "wall"], 0, True),
    ("", "Select the liquid.", ["milk", "rock", "book"], 0, False),
    ("", "Which is a mammal?", ["whale", "shark"], 0, True),
    ("", "Which is warmer?", ["ice", "fire"], 1, False),
]
# Answers by problem position, read by eval_science_qa.py's rules (A-E; "X. " prefix; one "The answer is X.")
ANSWERS = ["A", "B. calm", "The answer is D.", "a", "The answer is B!", "The answer is B. The answer is B.", "C.",
           "C", "E", "\tB", "Ａ", "The answer is A,", "", "B"]


def write_cqma(root: Path, problems=PROBLEMS) -> tuple[Path, Path]:
    """The question file (a JSON array, ids as strings, `image` only on image problems) and its image folder."""
    records = []
    for number, (hint, question, choices, answer, has_image) in enumerate(problems):
        pid = str(100 + number)
        text = (f"Context: {hint}\n" if hint else "") + question + "".join(
            f"\n{OPTIONS[i]}. {choice}" for i, choice in enumerate(choices))
        record = {"id": pid, "conversations": [{"from": "human", "value": ("<image>\n" if has_image else "") + text},
                                               {"from": "gpt", "value": OPTIONS[answer]}]}
        if has_image:
            record["image"] = f"{pid}/image.png"
            tiny_image(root / "images" / "test" / pid / "image.png", (number * 20, 80, 160))
        records.append(record)
    path = root / "llava_test_CQM-A.json"
    path.write_text(json.dumps(records, indent=2))
    return path, root / "images" / "test"


# LLaVA's rules, re-implemented from their description ---------------------------------------------

def llava_science_requests(question_file: Path) -> list[tuple[str, str, str, str | None]]:
    """model_vqa_science.py with --single-pred-prompt: (question_id, stored prompt, asked text, image)."""
    asked = []
    for line in json.loads(question_file.read_text()):
        qs = line["conversations"][0]["value"].replace("<image>", "").strip()
        cur_prompt = ("<image>" + "\n" + qs) if "image" in line else qs
        asked.append((line["id"], cur_prompt + "\n" + INSTRUCTION, qs + "\n" + INSTRUCTION, line.get("image")))
    return asked


def eval_science_qa(question_file: Path, answer_file: Path) -> dict:
    """eval_science_qa.py on LLaVA-1.5's question file (options and answer letter from its turns); the printed
    figures (two decimals)."""
    problems = {}
    for problem in json.loads(question_file.read_text()):
        human = problem["conversations"][0]["value"]
        problems[problem["id"]] = {"choices": re.findall(r"^[A-E]\. ", human, flags=re.MULTILINE),
                                   "answer": OPTIONS.index(problem["conversations"][1]["value"])}
    figures = published_rules(problems, [json.loads(line) for line in answer_file.read_text().splitlines()])
    return {"all": f"{figures['all']:.2f}", "IMG": f"{figures['IMG']:.2f}", "failed": figures["failed"]}


def llava_answer_file(path: Path, question_file: Path, texts: list[str], skip: set[int] = frozenset()) -> Path:
    lines = [json.dumps({"question_id": pid, "prompt": prompt, "text": text, "answer_id": f"a{number}",
                         "model_id": "llava-v1.5-13b", "metadata": {}})
             for number, ((pid, prompt, _, _), text) in enumerate(zip(llava_science_requests(question_file), texts))
             if number not in skip]
    path.write_text("\n".join(lines) + "\n")
    return path


def score(question_file: Path, predictions: Path, out: Path, *extra) -> int:
    return run_cli("scienceqa", "score", "--questions", question_file, "--predictions", predictions, "--out-dir", out,
                   *extra)


# Tests ----------------------------------------------------------------------------------------------

def test_requests_follow_model_vqa_science(tmp_path):
    question_file, images = write_cqma(tmp_path)
    requests = cqma_requests(load_cqma(question_file), images)
    expected = llava_science_requests(question_file)
    assert [(r.question_id, r.stored_prompt, r.question) for r in requests] == [e[:3] for e in expected]
    assert [r.image for r in requests] == [images / image if image else None for *_, image in expected]
    assert all(type(r.question_id) is str for r in requests)
    without_line = cqma_requests(load_cqma(question_file), images, letter_instruction=False)
    assert [r.question for r in without_line] == [e[2].removesuffix("\n" + INSTRUCTION) for e in expected]


def test_score_equals_eval_science_qa_and_headlines_img(tmp_path):
    question_file, _ = write_cqma(tmp_path)
    answers = llava_answer_file(tmp_path / "llava-v1.5-13b.jsonl", question_file, ANSWERS)
    assert score(question_file, answers, tmp_path / "out") == 0
    payload = json.loads((tmp_path / "out" / "scienceqa.json").read_text())
    expected = eval_science_qa(question_file, answers)
    assert f"{payload['accuracy']['all']:.2f}" == expected["all"]
    assert f"{payload['accuracy']['IMG']:.2f}" == expected["IMG"]
    assert expected["IMG"] not in ("0.00", "100.00") and expected["all"] != expected["IMG"]
    assert sorted(payload["failed_to_parse"]) == sorted(expected["failed"])
    assert payload["out_of_range"] == ["107"]  # C with two options ("E" with five, at 108, is in range)
    assert TASKS["scienceqa"].column.headline(payload) == payload["accuracy"]["IMG"]
    # the file names no subject or grade: only the context groups
    assert set(payload["accuracy"]) == {"all", "TXT", "IMG", "NO"}
    with_context = [n for n, p in enumerate(PROBLEMS) if p[0]]
    assert payload["groups"]["TXT"]["questions"] == len(with_context)
    assert "llava_test_CQM-A.json" in (tmp_path / "out" / "scienceqa.md").read_text()


def test_unanswered_problems_need_allow_partial(tmp_path, capsys):
    question_file, _ = write_cqma(tmp_path)
    answers = llava_answer_file(tmp_path / "partial.jsonl", question_file, ["A"] * len(PROBLEMS), skip={0, 1})
    assert score(question_file, answers, tmp_path / "out") == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert score(question_file, answers, tmp_path / "out", "--allow-partial") == 0
    payload = json.loads((tmp_path / "out" / "scienceqa.json").read_text())
    expected = eval_science_qa(question_file, answers)
    assert f"{payload['accuracy']['all']:.2f}" == expected["all"]  # unanswered count wrong, as published
    # IMG: ours keeps the unanswered image problem (100) in the denominator; the published script, which
    # finds IMG by the stored prompt, cannot see it (docs/eval.md)
    images = [n for n, p in enumerate(PROBLEMS) if p[4]]
    right = sum(1 for n in images if n != 0 and PROBLEMS[n][3] == 0)
    assert payload["accuracy"]["IMG"] == pytest.approx(100 * right / len(images))
    assert expected["IMG"] == f"{100 * right / (len(images) - 1):.2f}"


@pytest.mark.parametrize("damage, message", [
    ("past", "names none of the 2 options"), ("no_options", "does not end in `A. ...`"),
    ("not_array", "expected a JSON array"), ("both", "not both")])
def test_a_damaged_question_file_is_named(tmp_path, damage, message, capsys):
    question_file, images = write_cqma(tmp_path)
    records = json.loads(question_file.read_text())
    if damage == "past":
        records[0]["conversations"][1]["value"] = "C"
    if damage == "no_options":
        records[1]["conversations"][0]["value"] = "Which word best describes the tone?"
    question_file.write_text(json.dumps({"problems": records} if damage == "not_array" else records))
    extra = ["--data", tmp_path] if damage == "both" else []
    code = run_cli("scienceqa", "predict", "--questions", question_file, "--image-folder", images, "--model",
                   tmp_path / "no_model", "--out", tmp_path / "p.jsonl", *extra)
    error = capsys.readouterr().err
    assert code == 2 and message in error
    if damage in ("past", "no_options"):
        assert f"id '{records[0 if damage == 'past' else 1]['id']}'" in error


def test_image_problems_need_the_image_folder(tmp_path, capsys):
    question_file, _ = write_cqma(tmp_path)
    code = run_cli("scienceqa", "predict", "--questions", question_file, "--model", tmp_path / "m", "--out",
                   tmp_path / "p.jsonl")
    assert code == 2 and "--image-folder" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_predict_writes_llava_prompts_with_images_only_where_problems_have_one(tmp_path, tiny_llava):
    from llava_lf.evaluation.predict import PredictionRequest, question_hash

    question_file, images = write_cqma(tmp_path)
    out = tmp_path / "answers.jsonl"
    assert run_cli("scienceqa", "predict", "--questions", question_file, "--image-folder", images, "--model",
                   tiny_llava, "--out", out, "--limit", 2, "--max-new-tokens", 4, "--device", "cpu") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = llava_science_requests(question_file)[:2]
    assert [(r["question_id"], r["prompt"]) for r in records] == [(pid, prompt) for pid, prompt, _, _ in expected]
    for record, (pid, _, asked, image) in zip(records, expected):  # an image problem, then a text-only one
        request = PredictionRequest(pid, asked, images / image if image else None)
        assert record["metadata"]["question_hash"] == question_hash(request)
    assert records[0]["metadata"]["settings"]["max_new_tokens"] == 4
