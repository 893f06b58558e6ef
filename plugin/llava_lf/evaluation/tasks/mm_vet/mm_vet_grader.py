"""MM-Vet's GPT grader (`mm-vet_evaluator.py`), re-implemented: its few-shot table prompt, its reply reading
and re-asks, asked through our judge client with the run number in the reply cache's key."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from llava_lf.evaluation.judge import JudgeClient, ask_all

# The grader's prompt, as MM-Vet publishes it: an instruction, then a table of graded examples whose last row
# the judge completes. Built row by row here; the text is the grader's, character for character.
INSTRUCTION = (
    "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. "
    "<AND> in the ground truth means it is totally right only when all elements in the ground truth are present "
    "in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in "
    "the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, "
    "or 1.0 (totally right). Just complete the last space of the correctness score."
)
_EQUATION = ("What is x in the equation?", "-1 <AND> -5")
_MEME = (
    "Can you explain this meme?",
    "This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. "
    "Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in "
    "ice and snow. The meme is saying that the person has trust issues because the names of these countries do not "
    "accurately represent their landscapes.",
)
EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    (*_EQUATION, "x = 3", "0.0"),
    (*_EQUATION, "x = -1", "0.5"),
    (*_EQUATION, "x = -5", "0.5"),
    (*_EQUATION, "x = -5 or 5", "0.5"),
    (*_EQUATION, "x = -1 or x = -5", "1.0"),
    (*_MEME, "The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is "
             "not very icy and Greenland isn't very green.", "0.4"),
    (*_MEME, "The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. "
             "Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and "
             "snow. The text 'This is why I have trust issues' is a playful way to suggest that these "
             "contradictions can lead to distrust or confusion. The humor in this meme is derived from the "
             "unexpected contrast between the names of the countries and their actual physical characteristics.",
     "1.0"),
)
_TABLE = (("Question", "Ground truth", "Prediction", "Correctness"), ("---",) * 4, *EXAMPLES)
PROMPT = INSTRUCTION + "\n\n" + "".join(" | ".join(row) + "\n" for row in _TABLE)

REASK_SUFFIX = "\nPredict the correctness of the answer (digit): "
READ_REPLIES = 5  # the grader reads five replies; it asks a sixth, which it never reads, and scores 0.0
TEMPERATURE_STEP = 0.5
GRADER_MAX_TOKENS = 3


def grader_query(question: str, ground_truth: str, prediction: str, reask: bool = False) -> str:
    """The user message: the prompt, then the row to complete (`<AND>`/`<OR>` spaced out, as the grader does)."""
    truth = ground_truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return PROMPT + "\n" + " | ".join((question, truth, prediction, "")) + (REASK_SUFFIX if reask else "")


def read_score(reply: str) -> float | None:
    """The grader's reading: the text before the first plain space, stripped, as a float within [0, 1].

    So `"0.6\\nwhy"` and `" 0.3"` are unreadable while `".3"` and `"0.6 because"` read. NaN is refused here,
    where the grader would keep it and print NaN for every figure it enters (docs/eval.md)."""
    token = reply.split(" ")[0].strip()
    try:
        score = float(token)
    except ValueError:
        return None
    return score if 0.0 <= score <= 1.0 else None


def request_temperatures(first: float) -> tuple[float, ...]:
    """The temperature of each of the grader's six requests: the first re-ask goes out at the first request's
    temperature, and each later one 0.5 higher (the grader raises it only after sending)."""
    return (first,) + tuple(first + TEMPERATURE_STEP * step for step in range(READ_REPLIES))


@dataclass(frozen=True)
class GradeRequest:
    question_id: str  # mm-vet.json's id, e.g. v1_0
    question: str
    ground_truth: str
    prediction: str


@dataclass(frozen=True)
class Grade:
    question_id: str
    run: int  # 0-based
    score: float  # 0.0 when five replies were unreadable
    read: bool  # False: the grader's give-up (five unreadable replies, a sixth asked and ignored)
    content: str  # what the grader's grade file records: the score's text, or the ignored sixth reply
    replies: tuple[str, ...]  # every reply, in order
    temperatures: tuple[float, ...]  # of every request, in order
    served_model: str  # as the server named itself on the last reply


def grade_one(judge: JudgeClient, request: GradeRequest, run: int) -> Grade:
    first = [{"role": "user", "content": grader_query(request.question, request.ground_truth, request.prediction)}]
    reask = [{"role": "user", "content": grader_query(request.question, request.ground_truth, request.prediction,
                                                      reask=True)}]
    replies: list[str] = []
    temperatures = request_temperatures(judge.config.temperature)
    served = ""
    for attempt, temperature in enumerate(temperatures):
        reply = judge.complete(first if attempt == 0 else reask, temperature=temperature,
                               cache_tag={"mm_vet_run": run})
        replies.append(reply.text)
        served = reply.served_model
        if attempt == READ_REPLIES:  # the sixth reply: asked, never read
            break
        score = read_score(reply.text)
        if score is not None:
            token = reply.text.split(" ")[0].strip()
            return Grade(request.question_id, run, score, True, token, tuple(replies), temperatures[: attempt + 1],
                         served)
    return Grade(request.question_id, run, 0.0, False, replies[-1], tuple(replies), temperatures, served)


def grade_runs(judge: JudgeClient, requests: Sequence[GradeRequest], runs: int,
               workers: int = 4) -> list[list[Grade]]:
    """Every request graded `runs` times, one run after another as the grader does; each run's grades in
    request order. Within a run a small thread pool asks (the judge is remote and slow)."""
    return [ask_all(functools.partial(grade_one, judge, run=run), requests, workers, f"grade run {run + 1}/{runs}")
            for run in range(runs)]

