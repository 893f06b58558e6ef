"""ScienceQA with a text-only judge: the LLaVA paper's 92.53 ("GPT-4 as the judge").

The judge model answers every answered question from its text alone (question, context, options). Where
its choice and ours agree, ours stands. Where they differ, the judge is shown the question and both
answers and gives a final answer, which counts when it holds exactly one "The answer is X." naming one of
the problem's options; otherwise ours stands. Prompts are ours, in our own words (`--judge-prompt` is not
offered here: the rule that reads the final answer is what makes the figure comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llava_lf.evaluation.judge import JudgeClient, ask_all
from llava_lf.evaluation.tasks.scienceqa.scienceqa import (
    ANSWER_IS,
    OPTIONS,
    Extraction,
    Problem,
    build_prompt,
    choice_index,
    extract_letter,
)

SYSTEM_PROMPT = "You are a careful teacher who answers multiple-choice science questions."
ANSWER_INSTRUCTION = (
    "Answer the multiple-choice question above. You cannot see any picture the question mentions: use the "
    "question, the context and your knowledge. Explain briefly, then end with a line of the form "
    "\"The answer is X.\" where X is the letter of one option.")
DECIDE_INSTRUCTION = (
    "Two assistants answered the multiple-choice question above and disagree. Read both answers, work out "
    "which option is right, and end with a line of the form \"The answer is X.\" where X is the letter of "
    "one option.")

Source = Literal["agreed", "judge", "ours"]


@dataclass(frozen=True)
class JudgedProblem:
    pid: str
    ours: str  # our model's answer text
    judge_answer: str  # the judge's own answer
    decision: str | None  # the judge's final answer when the two disagreed
    final: str | None  # the letter that counts (None: no readable option)
    source: Source  # agreed: both chose the same; judge: the decision counted; ours: it did not parse
    served_model: str


def _question(problem: Problem) -> str:
    return build_prompt(problem, letter_instruction=False)


def answer_messages(problem: Problem) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{_question(problem)}\n\n{ANSWER_INSTRUCTION}"}]


def decide_messages(problem: Problem, ours: str, judge_answer: str) -> list[dict[str, str]]:
    body = (f"{_question(problem)}\n\n[Assistant 1]\n{ours}\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{judge_answer}\n[End of Assistant 2]\n\n{DECIDE_INSTRUCTION}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


def decision_letter(reply: str, problem: Problem) -> str | None:
    """The final answer by the "The answer is X." rule (exactly one match, X one of the options)."""
    matches = ANSWER_IS.findall(reply)
    if len(matches) != 1 or choice_index(Extraction(matches[0], "answer_is"), problem) is None:
        return None
    return matches[0]


def _letter(index: int | None) -> str | None:
    return None if index is None else OPTIONS[index]


def judge_problem(client: JudgeClient, problem: Problem, ours: str) -> JudgedProblem:
    our_index = choice_index(extract_letter(ours), problem)
    first = client.complete(answer_messages(problem))
    if choice_index(extract_letter(first.text), problem) == our_index:
        return JudgedProblem(problem.pid, ours, first.text, None, _letter(our_index), "agreed", first.served_model)
    second = client.complete(decide_messages(problem, ours, first.text))
    decided = decision_letter(second.text, problem)
    if decided is None:
        return JudgedProblem(problem.pid, ours, first.text, second.text, _letter(our_index), "ours",
                             second.served_model)
    return JudgedProblem(problem.pid, ours, first.text, second.text, decided, "judge", second.served_model)


def judge_all(client: JudgeClient, problems: Sequence[Problem], answers: dict[str, str],
              workers: int = 4) -> list[JudgedProblem]:
    """Judge every answered problem (in a small thread pool: the judge is remote and slow)."""
    answered = [problem for problem in problems if problem.pid in answers]
    return ask_all(lambda problem: judge_problem(client, problem, answers[problem.pid]), answered, workers, "judge")


def judged_answers(answers: dict[str, str], judged: Sequence[JudgedProblem]) -> dict[str, str]:
    """The answers to score after judging: a decision that counted replaces ours by its letter."""
    final = dict(answers)
    for item in judged:
        if item.source == "judge":
            final[item.pid] = item.final
    return final
