"""Scoring from hand-written prediction files, through `llava-lf eval ... score`: every ScienceQA extraction
rule and edge case, POPE's metrics, LLaVA-Bench's relative score, the demo's per-type accuracy."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from test_eval_data import run_cli, scienceqa_problem, write_pope, write_predictions, write_scienceqa

from llava_lf.evaluation.tasks import demo as shapes
from llava_lf.evaluation.tasks import llava_bench
from llava_lf.evaluation.tasks.llava_bench import Judgement
from llava_lf.evaluation.tasks.scienceqa import scienceqa


@pytest.mark.parametrize(("answer", "letter", "rule"), [
    ("B", "B", "letter"),
    ("  C \n", None, "failed"),  # scored as stored: LLaVA's inference (and ours) strips before writing
    ("C ", None, "failed"),
    ("C. ", "C", "prefix"),  # letter, full stop, space: the prefix rule needs nothing more
    ("A. red", "A", "prefix"),
    ("B. The answer is C.", "B", "prefix"),  # the prefix rule comes first
    ("F. The answer is B.", "B", "answer_is"),  # F is no option letter, so the prefix rule does not apply
    ("Whales feed their young milk. The answer is C.", "C", "answer_is"),
    ("The answer is C,", "C", "answer_is"),  # the published pattern's last "." is any character
    ("The answer is A!", "A", "answer_is"),
    ("The answer is A\n", None, "failed"),  # ... but not a newline
    ("The answer is F.", "F", "answer_is"),  # read; past the options is the scorer's business
    ("", None, "failed"),  # empty answer
    ("a", None, "failed"),  # lowercase letter
    ("\uff23", None, "failed"),  # a full-width C is not C
    ("The answer is A. No: The answer is B.", None, "failed"),  # two "The answer is" matches
    ("The answer is B. Yes, The answer is B.", None, "failed"),  # two matches, even when they agree
    ("A.", None, "failed"),  # too short for the prefix rule
    ("The answer is A", None, "failed"),  # nothing after the letter
    ("(A)", None, "failed"),
    ("Z", None, "failed"),  # not one of the options A-E
])
def test_scienceqa_extraction_rules(answer, letter, rule):
    assert scienceqa.extract_letter(answer) == scienceqa.Extraction(letter, rule)


# pid: (choices, answer, subject, hint, image, grade, prediction) -- correct: 1, 2, 3, 12
SQA_CASES = {
    "1": (3, 1, "natural science", True, True, 3, "B"),
    "2": (3, 0, "social science", False, True, 8, "A. red"),
    "3": (4, 2, "language science", True, False, 10, "First, think. The answer is C."),
    "4": (2, 0, "natural science", False, False, 1, ""),
    "5": (2, 0, "natural science", False, True, 2, "a"),
    "6": (3, 1, "social science", True, False, 7, "The answer is A. No, The answer is B."),
    "7": (2, 1, "language science", False, True, 5, "D"),
    "8": (2, 1, "natural science", False, False, 12, "A"),
    "9": (2, 0, "social science", False, True, 4, "A."),
    "10": (2, 0, "natural science", True, False, 6, "The answer is A"),
    "11": (3, 2, "language science", False, False, 11, "  C \n"),
    "12": (3, 1, "natural science", False, True, 9, "B. The answer is C."),
}


@pytest.fixture()
def sqa_files(tmp_path):
    problems = {pid: scienceqa_problem(f"Question {pid}?", [f"choice {c}" for c in range(n)], answer,
                                       hint="A hint." if hint else "", image=image, subject=subject, grade=grade)
                for pid, (n, answer, subject, hint, image, grade, _) in SQA_CASES.items()}
    data = write_scienceqa(tmp_path / "sqa", problems)
    predictions = write_predictions(tmp_path / "sqa_predictions.jsonl",
                                    {pid: case[-1] for pid, case in SQA_CASES.items()})
    return data, predictions


def test_scienceqa_score_groups_rules_and_report_files(tmp_path, sqa_files, capsys):
    data, predictions = sqa_files
    out = tmp_path / "results"
    assert run_cli("scienceqa", "score", "--data", data, "--predictions", predictions, "--out-dir", out) == 0
    result = json.loads((out / "scienceqa.json").read_text())
    # Worked out by hand from SQA_CASES.
    expected = {"all": (12, 4), "NAT": (6, 2), "SOC": (3, 1), "LAN": (3, 1), "TXT": (4, 2), "IMG": (6, 3),
                "NO": (3, 0), "G1-6": (6, 1), "G7-12": (6, 3)}
    assert {g: (v["questions"], v["correct"]) for g, v in result["groups"].items()} == expected
    assert result["accuracy"]["all"] == pytest.approx(100 * 4 / 12)
    assert result["rules"] == {"letter": 3, "prefix": 2, "answer_is": 1, "failed": 6}
    assert result["failed_to_parse"] == ["4", "5", "6", "9", "10", "11"]
    assert result["out_of_range"] == ["7"]
    table = (out / "scienceqa.md").read_text()
    img_row = next(line for line in table.splitlines() if line.startswith("| with image (IMG)"))
    assert "| 6 | 50.00 |" in img_row and "66.8" in img_row and "71.6" in img_row  # beside LLaVA-1.5's SQA-IMG
    assert "Failed to parse (6, counted wrong): 4, 5, 6, 9, 10, 11" in table
    assert Image.open(out / "scienceqa.png").size[0] > 300
    assert "ScienceQA test: 33.33% of 12; with image 50.00% of 6" in capsys.readouterr().out


def test_scienceqa_score_refuses_partial_and_unknown_predictions(tmp_path, sqa_files, capsys):
    data, _ = sqa_files
    partial = write_predictions(tmp_path / "partial.jsonl", {"1": "B", "2": "C"})
    assert run_cli("scienceqa", "score", "--data", data, "--predictions", partial, "--out-dir", tmp_path / "r") == 2
    assert "answers 2 of 12 questions" in capsys.readouterr().err
    assert run_cli("scienceqa", "score", "--data", data, "--predictions", partial, "--out-dir", tmp_path / "r",
                   "--allow-partial") == 0
    result = json.loads((tmp_path / "r" / "scienceqa.json").read_text())
    # As published, a problem without an answer counts as FAILED: wrong, and in the denominator.
    assert result["groups"]["all"] == {"group": "all", "questions": 12, "correct": 1}
    assert len(result["missing"]) == 10 and result["rules"]["failed"] == 0
    stray = write_predictions(tmp_path / "stray.jsonl", {pid: "A" for pid in SQA_CASES} | {"999": "A"})
    assert run_cli("scienceqa", "score", "--data", data, "--predictions", stray, "--out-dir", tmp_path / "r") == 2
    assert "does not ask (first: ['999'])" in capsys.readouterr().err


def test_pope_metrics_per_split(tmp_path):
    annotations = write_pope(tmp_path, {"random": ["yes", "yes", "no", "no", "yes", "no"], "adversarial": ["no", "yes"]})
    predictions = write_predictions(tmp_path / "pope.jsonl", {
        "random/1": "Yes",  # TP
        "random/2": "No, there is not.",  # FN
        "random/3": "yes, there is a cat.",  # FP
        "random/4": "There is no cat in the image.",  # TN
        "random/5": "NO",  # read as yes (the published rule looks for No/no/not): TP, and counted unclear
        "random/6": "I do not think so",  # "not": TN
        "adversarial/1": "Yes. No.",  # only the first sentence counts: FP
        "adversarial/2": "",  # read as yes: TP, unclear
    })
    out = tmp_path / "results"
    assert run_cli("pope", "score", "--annotations", annotations, "--predictions", predictions, "--out-dir", out) == 0
    result = json.loads((out / "pope.json").read_text())
    random, adversarial = result["splits"]["random"], result["splits"]["adversarial"]
    assert (random["tp"], random["fp"], random["tn"], random["fn"]) == (2, 1, 2, 1)
    assert random["accuracy"] == pytest.approx(4 / 6)
    assert random["precision"] == random["recall"] == random["f1"] == pytest.approx(2 / 3)
    assert random["yes_ratio"] == pytest.approx(0.5)
    assert (adversarial["tp"], adversarial["fp"], adversarial["tn"], adversarial["fn"]) == (1, 1, 0, 0)
    assert (adversarial["precision"], adversarial["recall"], adversarial["yes_ratio"]) == (0.5, 1.0, 1.0)
    assert result["mean_f1"] == pytest.approx(2 / 3)
    assert result["unclear"] == ["adversarial/2", "random/5"]
    table = (out / "pope.md").read_text()
    assert "| random | 6 | 66.7 | 66.7 | 66.7 | 66.7 | 50.0 | 1 |" in table
    assert "85.9" in table and "86.4" in table
    assert list(result["splits"]) == ["random", "adversarial"]  # the published order
    assert (out / "pope.png").stat().st_size > 1000


def test_llava_bench_relative_score_per_category():
    judgements = [
        Judgement("0", "conv", (8.0, 6.0), ("8 6",), "judge"),
        Judgement("3", "conv", (10.0, 5.0), ("10 5",), "judge"),
        Judgement("1", "detail", (6.0, 6.0), ("6 6",), "judge"),
        Judgement("2", "complex", (5.0, 4.0), ("5 4",), "judge"),
        Judgement("4", "complex", None, ("great", "still great"), "judge"),
    ]
    scores = llava_bench.summarise(judgements)
    # As published: means rounded to 3 decimals, the relative score to 1.
    assert (scores["conv"].reference_mean, scores["conv"].candidate_mean, scores["conv"].relative) == (9.0, 5.5, 61.1)
    assert scores["detail"].relative == 100.0
    assert scores["complex"].relative == 80.0
    assert (scores["complex"].scored, scores["complex"].unparsable) == (1, 1)
    assert scores["all"].relative == 72.4  # 5.25 / 7.25; unparsable replies stay out of the means
    assert (scores["all"].questions, scores["all"].scored) == (5, 4)
    only_unparsable = llava_bench.summarise([judgements[-1]])
    assert only_unparsable["complex"].relative is None and only_unparsable["all"].unparsable == 1


@pytest.mark.parametrize(("reply", "scores"), [
    ("8 7\nAssistant 1 is more detailed.", (8.0, 7.0)),
    ("8, 7", (8.0, 7.0)),
    ("7.5 9", (7.5, 9.0)),
    ("\n 6 4\n", (6.0, 4.0)),
    ("8/10 7/10", None),
    ("Scores: 8 7", None),
    ("11 3", None),  # outside 1-10
    ("8", None),
    ("8 7 6", None),
    ("", None),
    ("The first assistant\n8 7", None),  # the scores must be on the first line
])
def test_judge_score_parsing(reply, scores):
    assert llava_bench.parse_scores(reply) == scores


def test_demo_score_uses_the_demo_scoring(tmp_path):
    questions = tmp_path / "shapes_test_questions.jsonl"
    rows = [{"qtype": "color", "question": "What color is the circle?", "answer": "red", "image": "a.png"},
            {"qtype": "count", "question": "How many shapes are there?", "answer": "2", "image": "a.png"},
            {"qtype": "color", "question": "What color is the square?", "answer": "blue", "image": "b.png"},
            {"qtype": "presence", "question": "Is there a red cross?", "answer": "no", "image": "b.png"}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # "Red." and "two" match after the demo's normalisation; "green" does not.
    ids = shapes.question_ids(rows)
    predictions = write_predictions(tmp_path / "demo.jsonl", dict(zip(ids, ["Red.", "two", "green", "No"])))
    out = tmp_path / "results"
    assert run_cli("demo", "score", "--questions", questions, "--predictions", predictions, "--out-dir", out) == 0
    scores = json.loads((out / "demo.json").read_text())["scores"]
    assert scores["color"]["correct"] == 1 and scores["color"]["questions"] == 2
    assert scores["count"]["correct"] == scores["presence"]["correct"] == 1
    assert scores["all"]["accuracy"] == pytest.approx(0.75)
    assert "| color | 2 |" in (out / "demo.md").read_text()


def test_demo_score_keys_answers_by_content_not_line(tmp_path):
    """A reordered question file scores the same (matched by line number, it once scored 6% instead of 98%)."""
    rows = [{"qtype": "color", "question": f"What color is shape {i}?", "answer": colour, "image": f"{i % 3}.png"}
            for i, colour in enumerate(["red", "blue", "green", "red", "purple", "orange"])]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    predictions = write_predictions(tmp_path / "demo.jsonl",
                                    dict(zip(shapes.question_ids(rows), [r["answer"] for r in rows])))
    assert shapes.score_demo(questions, predictions)[0]["all"].accuracy == 1.0
    questions.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    assert shapes.score_demo(questions, predictions)[0]["all"].accuracy == 1.0
