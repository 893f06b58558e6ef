"""MM-Vet: `llava-lf eval mm-vet score` against a real loopback judge with scripted replies, checked against
the grader's rules re-implemented here from their description (reply reading, re-asks and their temperatures,
the wasted sixth request, per-capability sums, runs' mean and std, numpy's rounding), LLaVA's result-file
conversion, partial answer files; and one predict run on the tiny model."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from helpers.fake_openai import FakeOpenAI, Reply, ok
from test_eval_data import run_cli, tiny_image

from llava_lf.evaluation.judge import JudgeClient, JudgeConfig
from llava_lf.evaluation.tasks import TASKS
from llava_lf.evaluation.tasks.mm_vet import mm_vet_grader

pytestmark = [pytest.mark.host, pytest.mark.timeout(120)]

INSTRUCTION = ("Compare the ground truth and prediction from AI models, to give a correctness score for the "
               "prediction. <AND> in the ground truth means it is totally right only when all elements in the ground "
               "truth are present in the prediction, and <OR> means it is totally right when any one element in the "
               "ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, "
               "0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the "
               "correctness score.")
REASK = "\nPredict the correctness of the answer (digit): "

# (capabilities, question, ground truth, prediction, the grader's replies in order; the last one repeats)
ITEMS = [
    (["ocr", "math"], "What is x in the equation?", "-1<AND>-5", "x = -1 and x = -5", ["1.0"]),
    (["rec"], "What animal is this?", "cat<OR>kitten", "A kitten on a sofa.", ["0.6\nwhy", " 0.3", ".3"]),
    (["rec", "know"], "Who painted this?", "Van Gogh", "It was painted by Monet.", ["abc"] * 5 + ["1.0"]),
    (["ocr"], "What is written on the sign?", "STOP", "The sign says STOP.", ["1.5", "0.9"]),
    (["rec", "know", "gen"], "Can you explain this meme?", "Iceland is green and Greenland is icy.",
     "Le café est à gauche: 冰岛 is green\tand icy.", ["0.4 partially"]),
    (["spat", "ocr"], "Which sign is on the left?", "the red one", "The red one\nis on the left.", ["0.8"]),
    (["math", "ocr", "spat"], "What is 3 + 4?", "7", "Seven.", ["-0.2", "nan", "0.7"]),
    (["rec", "spat"], "How many apples are there?", "2", "Three apples.", ["", "0"]),
]


# The grader's rules, written from their description ----------------------------------------------

def reference_read(reply: str) -> float | None:
    head = reply.partition(" ")[0].strip()  # the first token of a split on plain spaces
    try:
        value = float(head)
    except ValueError:
        return None
    return value if not math.isnan(value) and 0.0 <= value <= 1.0 else None


def reference_grade(replies) -> tuple[float, int]:
    """(score, requests sent): replies 1-5 are read; a sixth is asked, never read, and the score is 0.0."""
    for sent in range(1, 7):
        reply = next(replies)
        if sent == 6:
            return 0.0, 6
        if (value := reference_read(reply)) is not None:
            return value, sent
    raise AssertionError("unreachable")


def repeating(replies):
    yield from replies
    while True:
        yield replies[-1]


def numpy_round(value: float) -> float:
    return round(value * 10) / 10  # numpy's round(x, 1): rint(x * 10) / 10, half to even


def reference_figures(items, runs: list[dict[str, float]]) -> dict:
    """Per capability: the mean over runs of (sum of scores / questions x 100); total over all questions."""
    capabilities = {c for caps, *_ in items for c in caps}
    groups = {c: [f"v1_{i}" for i, (caps, *_) in enumerate(items) if c in caps] for c in capabilities}
    groups["total"] = [f"v1_{i}" for i in range(len(items))]
    figures = {}
    for name, ids in groups.items():
        per_run = [sum(run.get(qid, 0.0) for qid in ids) / len(ids) * 100 for run in runs]
        mean = sum(per_run) / len(per_run)
        figures[name] = {"mean": numpy_round(mean), "runs": [numpy_round(v) for v in per_run],
                         "std": numpy_round(math.sqrt(sum((v - mean) ** 2 for v in per_run) / len(per_run)))}
    return figures


# Files shaped as the releases ---------------------------------------------------------------------

def write_mm_vet(root, items=ITEMS, answered=None, extra_fields=True):
    """mm-vet.json, llava-mm-vet.jsonl, images, and an answer file as LLaVA's model_vqa.py writes it."""
    root.mkdir(parents=True, exist_ok=True)
    data = {f"v1_{i}": {"imagename": f"v1_{i}.png", "capability": caps, "question": q, "answer": truth}
            for i, (caps, q, truth, *_) in enumerate(items)}
    (root / "mm-vet.json").write_text(json.dumps(data, indent=4))
    with open(root / "llava-mm-vet.jsonl", "w") as handle:
        for i, (_, question, *_) in enumerate(items):
            handle.write(json.dumps({"image": f"v1_{i}.png", "text": question, "category": "conv", "question_id": i}) + "\n")
            tiny_image(root / "images" / f"v1_{i}.png", (30 * i, 90, 200 - 20 * i))
    answers = root / "answers.jsonl"
    with open(answers, "w") as handle:
        for i, (_, question, _, prediction, _) in enumerate(items):
            if answered is None or i in answered:
                record = {"question_id": i, "prompt": question, "text": prediction}
                if extra_fields:
                    record |= {"answer_id": f"Ans{i}xYz", "model_id": "llava-v1.5-13b", "metadata": {}}
                handle.write(json.dumps(record) + "\n")
    return root / "mm-vet.json", answers


class ScriptedGrader(FakeOpenAI):
    """Replies per answer (told apart by the prediction in the row to grade), in order; the last repeats."""

    def __init__(self, items=ITEMS):
        super().__init__(served_model="gpt-4-0613")
        self.replies = {prediction: replies for *_, prediction, replies in items}
        self.asked: Counter = Counter()

    def reply_for(self, body, index):
        content = body["messages"][-1]["content"]
        [prediction] = [p for p in self.replies if f" | {p} | " in content]
        replies = self.replies[prediction]
        reply = replies[min(self.asked[prediction], len(replies) - 1)]
        self.asked[prediction] += 1
        return ok(reply), prediction


def score(server, data, answers, out, *extra) -> int:
    return run_cli("mm-vet", "score", "--predictions", answers, "--data", data, "--out-dir", out,
                   "--judge-base-url", server.url, "--judge-model", "gpt-4-0613", "--judge-key-env", "",
                   "--judge-backoff", "0.01", *extra)


# The grader's request and reply reading -----------------------------------------------------------

def test_the_prompt_is_the_graders_table_and_the_row_to_complete():
    prompt = mm_vet_grader.PROMPT
    lines = prompt.split("\n")
    assert lines[0] == INSTRUCTION and lines[1] == ""
    assert lines[2] == "Question | Ground truth | Prediction | Correctness" and lines[3] == "--- | --- | --- | ---"
    examples = [line.split(" | ") for line in lines[4:-1]]
    assert len(examples) == 7 and lines[-1] == ""
    assert examples[0] == ["What is x in the equation?", "-1 <AND> -5", "x = 3", "0.0"]
    assert [row[3] for row in examples] == ["0.0", "0.5", "0.5", "0.5", "1.0", "0.4", "1.0"]
    assert examples[5][0] == "Can you explain this meme?" and examples[5][1].startswith("This meme is poking fun")
    query = mm_vet_grader.grader_query("Q?", "a<AND>b<OR>c", "pred")
    assert query == prompt + "\nQ? | a <AND> b <OR> c | pred | "
    assert mm_vet_grader.grader_query("Q?", "a", "p", reask=True) == prompt + "\nQ? | a | p | " + REASK


@pytest.mark.parametrize("reply", ["0.6\nwhy", " 0.3", ".3", "1.5", "abc", "0.6 because", "1", "0", "1.0\n", "-0.1",
                                   "nan", "NaN", "inf", "", "\t0.4", "0.5.", "1e-1", "0.7\t", "١", "0,5", "  ", "1.0 0.2"])
def test_a_reply_reads_as_the_grader_reads_it(reply):
    assert mm_vet_grader.read_score(reply) == reference_read(reply)


def test_the_documented_readings():
    read = mm_vet_grader.read_score
    assert (read("0.6\nwhy"), read(" 0.3"), read(".3"), read("1.5"), read("abc")) == (None, None, 0.3, None, None)


def test_five_unreadable_replies_then_a_sixth_request_never_read(tmp_path):
    items = [(["rec"], "What is shown?", "a dog", "A dog.", ["abc"] * 5 + ["1.0"])]
    with ScriptedGrader(items) as server:
        judge = JudgeClient(JudgeConfig(server.url, "gpt-4-0613", api_key_env=None, temperature=0.0, max_tokens=3))
        grade = mm_vet_grader.grade_one(judge, mm_vet_grader.GradeRequest("v1_0", "What is shown?", "a dog", "A dog."), 0)
    assert (grade.score, grade.read, grade.content) == (0.0, False, "1.0")  # the sixth said 1.0: never read
    assert len(server.seen) == 6 and grade.replies == ("abc",) * 5 + ("1.0",)
    bodies = [seen.body for seen in server.seen]
    # The first re-ask goes out at the first request's temperature; each later one 0.5 higher.
    assert [body["temperature"] for body in bodies] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(body["max_tokens"] == 3 and body["model"] == "gpt-4-0613" and len(body["messages"]) == 1
               for body in bodies)
    first = mm_vet_grader.PROMPT + "\nWhat is shown? | a dog | A dog. | "
    assert bodies[0]["messages"][0] == {"role": "user", "content": first}
    assert all(body["messages"][0]["content"] == first + REASK for body in bodies[1:])


# Scoring through the CLI --------------------------------------------------------------------------

def test_score_reads_llavas_answer_file_and_writes_figures_results_and_grades(tmp_path):
    data, answers = write_mm_vet(tmp_path / "mm-vet")
    with ScriptedGrader() as server:
        assert score(server, data, answers, tmp_path / "out") == 0
    expected = [reference_grade(repeating(replies)) for *_, replies in ITEMS]
    assert len(server.seen) == sum(sent for _, sent in expected)  # re-asks and the wasted sixth included
    figures = reference_figures(ITEMS, [{f"v1_{i}": s for i, (s, _) in enumerate(expected)}])
    payload = json.loads((tmp_path / "out" / "mm_vet.json").read_text())
    assert payload["total"] == figures["total"]["mean"] and payload["per_run"]["total"] == figures["total"]["runs"]
    assert set(payload["capabilities"]) == {"rec", "ocr", "know", "gen", "spat", "math"}
    assert payload["capabilities"] == {name: figures[name]["mean"] for name in payload["capabilities"]}
    assert payload["std"] == 0.0 and payload["runs"] == 1 and payload["missing"] == []
    assert payload["given_up"] == ["v1_2 (run 1)"]
    assert payload["counts"] == {"rec": 4, "ocr": 4, "know": 2, "gen": 1, "spat": 3, "math": 2}
    assert list(payload["counts"]) == [name for name, _ in Counter(payload["counts"]).most_common()]
    assert TASKS["mm-vet"].column.headline(payload) == payload["total"]

    # mm_vet_results.json: what LLaVA's convert_mmvet_for_eval.py writes from the same answer file.
    converted = {}
    for line in answers.read_text().splitlines():
        record = json.loads(line)
        converted[f"v1_{record['question_id']}"] = record["text"]
    written = (tmp_path / "out" / "mm_vet_results.json").read_text(encoding="utf-8")
    assert written == json.dumps(converted, indent=2) and "\\u51b0" in written  # ASCII, as json.dump writes

    grades = json.loads((tmp_path / "out" / "mm_vet_grade.json").read_text())
    assert list(grades) == [f"v1_{i}" for i in range(len(ITEMS))]
    assert grades["v1_1"] == {"model": ["gpt-4-0613"], "content": [".3"], "score": [0.3]}
    assert grades["v1_2"]["score"] == [0.0] and grades["v1_4"]["content"] == ["0.4"]
    reviews = [json.loads(line) for line in (tmp_path / "out" / "mm_vet_reviews.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in reviews] == list(grades)
    assert reviews[6]["replies"] == ["-0.2", "nan", "0.7"] and reviews[6]["temperatures"] == [0.0, 0.0, 0.5]
    markdown = (tmp_path / "out" / "mm_vet.md").read_text()
    assert "LLaVA-1.5 13B" in markdown and "36.1" in markdown and "v1_2 (run 1)" in markdown
    assert (tmp_path / "out" / "mm_vet.png").stat().st_size > 0


def test_three_runs_are_three_real_requests_and_report_mean_and_std(tmp_path):
    items = [
        (["rec"], "Q0?", "a", "pred zero", ["1.0", "0.5", "0.0"]),
        (["rec", "ocr"], "Q1?", "b", "pred one", ["x", "0.2", "0.4", "0.6"]),
        (["ocr", "math"], "Q2?", "c", "pred two", ["0.9", "0.9", "0.8"]),
        (["math"], "Q3?", "d", "pred three", ["0.1", "?"] + ["??"] * 4 + ["0.3", "0.3"]),
    ]
    data, answers = write_mm_vet(tmp_path / "mm-vet", items)
    cache = tmp_path / "cache"
    with ScriptedGrader(items) as server:
        assert score(server, data, answers, tmp_path / "out", "--judge-runs", "3", "--judge-cache", cache,
                     "--judge-workers", "2") == 0
        asked = len(server.seen)
        # Scored again with the same cache: every request of every run comes from it.
        assert score(server, data, answers, tmp_path / "again", "--judge-runs", "3", "--judge-cache", cache) == 0
        assert len(server.seen) == asked
    streams = [repeating(replies) for *_, replies in items]
    runs, sent = [], 0
    for _ in range(3):
        run = {}
        for i, stream in enumerate(streams):
            run[f"v1_{i}"], requests = reference_grade(stream)
            sent += requests
        runs.append(run)
    assert asked == sent == 3 + 4 + 3 + 8  # every run asked the judge: none was served another run's reply
    assert [run["v1_3"] for run in runs] == [0.1, 0.0, 0.3]
    figures = reference_figures(items, runs)
    for out in ("out", "again"):
        payload = json.loads((tmp_path / out / "mm_vet.json").read_text())
        assert (payload["total"], payload["std"], payload["per_run"]["total"]) == (
            figures["total"]["mean"], figures["total"]["std"], figures["total"]["runs"])
        assert payload["capabilities"] == {name: figures[name]["mean"] for name in ("rec", "ocr", "math")}
        assert payload["per_run"]["math"] == figures["math"]["runs"] and payload["runs"] == 3
        assert payload["given_up"] == ["v1_3 (run 2)"]
    assert json.loads((tmp_path / "again" / "mm_vet.json").read_text())["judge_stats"]["requests"] == 0
    grades = json.loads((tmp_path / "out" / "mm_vet_grade.json").read_text())
    assert grades["v1_0"]["score"] == [1.0, 0.5, 0.0] and grades["v1_1"]["content"] == ["0.2", "0.4", "0.6"]


def test_a_partial_answer_file_is_refused_unless_allowed(tmp_path, capsys):
    data, answers = write_mm_vet(tmp_path / "mm-vet", answered={0, 1, 2, 4, 5, 7})
    with ScriptedGrader() as server:
        assert score(server, data, answers, tmp_path / "refused") == 2
        assert not server.seen
        message = capsys.readouterr().err
        assert "answers 6 of 8 questions" in message and "--allow-partial" in message
        assert score(server, data, answers, tmp_path / "out", "--allow-partial") == 0
    asked = {seen.tag for seen in server.seen}
    assert "The sign says STOP." not in asked and "Seven." not in asked
    scores = {f"v1_{i}": reference_grade(repeating(ITEMS[i][4]))[0] for i in (0, 1, 2, 4, 5, 7)}
    figures = reference_figures(ITEMS, [scores])  # the missing two count as 0 over all eight questions
    payload = json.loads((tmp_path / "out" / "mm_vet.json").read_text())
    assert payload["total"] == figures["total"]["mean"] and payload["missing"] == ["v1_3", "v1_6"]
    assert payload["capabilities"]["ocr"] == figures["ocr"]["mean"]
    results = json.loads((tmp_path / "out" / "mm_vet_results.json").read_text())
    assert list(results) == ["v1_0", "v1_1", "v1_2", "v1_4", "v1_5", "v1_7"]  # as LLaVA's converter writes it
    assert "v1_3, v1_6" in (tmp_path / "out" / "mm_vet.md").read_text()


def test_bad_inputs_name_the_file_record_and_fix(tmp_path, capsys):
    data, answers = write_mm_vet(tmp_path / "mm-vet")
    broken = json.loads(data.read_text())
    broken["v1_3"]["capability"] = "ocr"
    del broken["v1_5"]["answer"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    stray = tmp_path / "stray.jsonl"
    stray.write_text(answers.read_text() + json.dumps({"question_id": 99, "text": "?"}) + "\n")
    with FakeOpenAI([Reply(text="1.0")]) as server:
        assert score(server, bad, answers, tmp_path / "a") == 2
        err = capsys.readouterr().err
        assert "record 'v1_3'" in err and "capability" in err and "record 'v1_5'" in err and "answer" in err
        assert score(server, data, stray, tmp_path / "b") == 2
        assert "does not ask" in capsys.readouterr().err
        assert score(server, data, answers, tmp_path / "c", "--judge-runs", "0") == 2
        assert "--judge-runs 0" in capsys.readouterr().err
    assert not server.seen


def test_predict_asks_the_raw_question_and_writes_llavas_answer_records(tmp_path, tiny_llava):
    write_mm_vet(tmp_path / "mm-vet")
    out = tmp_path / "answers.jsonl"
    assert TASKS["mm-vet"].max_new_tokens == 1024
    assert run_cli("mm-vet", "predict", "--questions", tmp_path / "mm-vet" / "llava-mm-vet.jsonl", "--image-folder",
                   tmp_path / "mm-vet" / "images", "--model", tiny_llava, "--out", out, "--max-new-tokens", "4",
                   "--limit", "3", "--device", "cpu", "--batch-size", "3") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in records] == [0, 1, 2]  # ints, as the question file spells them
    assert [r["prompt"] for r in records] == [question for _, question, *_ in ITEMS[:3]]
    assert all(isinstance(r["text"], str) and r["answer_id"] and r["model_id"] for r in records)
