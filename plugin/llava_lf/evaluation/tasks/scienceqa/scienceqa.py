"""ScienceQA: the LLaVA prompt, the published answer extraction, grouped accuracy (the command is this package's).

Two question files. LLaVA-1.5's `llava_test_CQM-A.json` (`--questions`, read in `scienceqa_cqma`) holds
each prompt as LLaVA-1.5 asks it. ScienceQA's own `problems.json` with `pid_splits.json` (`--data`, images
at `{image_root}/{split}/{pid}/{problem["image"]}`) is asked in LLaVA v1's format. Groups follow the
ScienceQA paper: subject (NAT, SOC, LAN), context modality (TXT: has a hint, IMG: has an image, NO:
neither) and grade (G1-6, G7-12); IMG is the "with image" accuracy LLaVA-1.5 reports as SQA-IMG.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.predict import PredictionRequest
from llava_lf.evaluation.questions import read_json, require_images
from llava_lf.evaluation.tally import Tally

LETTERS = string.ascii_uppercase
# The option letters the published scorer knows (its `--options` default); ScienceQA has at most five choices.
OPTIONS = "ABCDE"
# LLaVA-1.5's zero-shot instruction for multiple choice.
LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
# As published: the last `.` is any character but a newline ("The answer is C," and "The answer is A!" count).
ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
GROUP_ORDER = ("all", "NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12")
GROUP_NAMES = {"all": "overall", "NAT": "natural science", "SOC": "social science", "LAN": "language science",
               "TXT": "text context", "IMG": "with image", "NO": "no context", "G1-6": "grades 1-6",
               "G7-12": "grades 7-12"}

Rule = Literal["letter", "prefix", "answer_is", "failed"]


@dataclass(frozen=True)
class Problem:
    pid: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    hint: str
    image: str | None  # file name inside {split}/{pid}/ (problems.json), or inside --image-folder (CQM-A)
    subject: str | None  # None where the question file does not say (CQM-A)
    grade: int | None
    prompt_text: str | None = None  # the question file's own prompt (CQM-A), asked as it is

    @property
    def groups(self) -> list[str]:
        groups = ["all"] + ([] if self.subject is None else [SUBJECTS.get(self.subject, self.subject)])
        if self.hint:
            groups.append("TXT")
        if self.image:
            groups.append("IMG")
        if not self.hint and not self.image:
            groups.append("NO")
        if self.grade is not None:
            groups.append("G1-6" if self.grade <= 6 else "G7-12")
        return groups


def _problem(pid: str, raw: dict) -> Problem:
    required = ("question", "choices", "answer", "subject", "grade")
    absent = [name for name in required if name not in raw]
    if absent:
        raise LlavaLfError(f"problems.json: problem {pid} lacks {', '.join(absent)}; "
                                 "use the unmodified problems.json from the ScienceQA release")
    grade = re.fullmatch(r"grade(\d+)", str(raw["grade"]))
    if grade is None:
        raise LlavaLfError(f"problems.json: problem {pid} has grade {raw['grade']!r}; expected 'grade1'..'grade12'")
    choices = tuple(raw["choices"])
    if not 0 <= raw["answer"] < len(choices) or len(choices) > len(LETTERS):
        raise LlavaLfError(f"problems.json: problem {pid} has answer {raw['answer']} for {len(choices)} choices")
    return Problem(pid, raw["question"], choices, int(raw["answer"]), (raw.get("hint") or "").strip(),
                   raw.get("image") or None, raw["subject"], int(grade.group(1)))


def load_problems(data_dir: Path, split: str = "test") -> list[Problem]:
    """The problems of one split, in `pid_splits.json` order."""
    what = "as --data the folder holding ScienceQA's problems.json and pid_splits.json"
    splits, raw = (read_json(data_dir / name, what) for name in ("pid_splits.json", "problems.json"))
    if split not in splits:
        raise LlavaLfError(f"split {split!r} not in pid_splits.json; it has {', '.join(sorted(splits))}")
    unknown = [pid for pid in splits[split] if pid not in raw]
    if unknown:
        raise LlavaLfError(f"{len(unknown)} pid(s) of split {split} missing from problems.json (first: {unknown[0]})")
    return [_problem(str(pid), raw[pid]) for pid in splits[split]]


def build_prompt(problem: Problem, letter_instruction: bool = True) -> str:
    """The question file's own prompt where it has one (CQM-A: `Context: {hint}\\n` when there is a hint,
    the question, `A. ...` lines); else LLaVA v1's `{question}\\nContext: {hint or N/A}\\nOptions: (A) ...
    (B) ...`. Then LLaVA-1.5's letter line (its `--single-pred-prompt`)."""
    if problem.prompt_text is not None:
        prompt = problem.prompt_text
    else:
        options = " ".join(f"({LETTERS[index]}) {choice}" for index, choice in enumerate(problem.choices))
        prompt = f"{problem.question}\nContext: {problem.hint or 'N/A'}\nOptions: {options}"
    return f"{prompt}\n{LETTER_INSTRUCTION}" if letter_instruction else prompt


def image_path(problem: Problem, image_root: Path, split: str) -> Path | None:
    return image_root / split / problem.pid / problem.image if problem.image else None


def prediction_requests(problems: Sequence[Problem], image_root: Path, split: str,
                        letter_instruction: bool = True) -> list[PredictionRequest]:
    return require_images([PredictionRequest(p.pid, build_prompt(p, letter_instruction),
                                             image_path(p, image_root, split)) for p in problems],
                          f"--images must be the folder holding {split}/<pid>/image.png")


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: Rule


def extract_letter(answer: str) -> Extraction:
    """`eval_science_qa.py`'s rules, in order, on the text as stored (LLaVA's inference strips it, and so
    does ours): (1) the text is exactly an option letter A-E; (2) it is at least three characters, starts
    with an option letter and then ". "; (3) `The answer is ([A-Z]).` matches exactly once. Anything else
    fails (lowercase, two matches, empty, "C." or "C " with nothing after)."""
    if answer in OPTIONS and len(answer) == 1:
        return Extraction(answer, "letter")
    if len(answer) >= 3 and answer[0] in OPTIONS and answer[1:3] == ". ":
        return Extraction(answer[0], "prefix")
    matches = ANSWER_IS.findall(answer)
    if len(matches) == 1:
        return Extraction(matches[0], "answer_is")
    return Extraction(None, "failed")


def choice_index(extraction: Extraction, problem: Problem) -> int | None:
    """The chosen option's index, or None when nothing was read or the letter is past the last option
    (or past E, as the published scorer knows only A-E)."""
    letter = extraction.letter
    if letter is None or letter not in OPTIONS[: len(problem.choices)]:
        return None
    return OPTIONS.index(letter)


@dataclass
class ScienceQAResult:
    split: str
    groups: dict[str, Tally]  # GROUP_ORDER first
    rules: dict[str, int]  # how many answers each extraction rule read
    failed_to_parse: list[str]  # pids whose answer no rule could read (counted wrong)
    out_of_range: list[str]  # pids answered with a letter past the last option (counted wrong)
    missing: list[str] = field(default_factory=list)  # pids without a prediction (--allow-partial): counted wrong


def score(problems: Sequence[Problem], answers: dict[str, str], split: str,
          missing: Sequence[str] = ()) -> ScienceQAResult:
    """Accuracy per group over every problem of the split: an unanswered problem counts as FAILED (wrong),
    as in the published scorer (only reachable with --allow-partial)."""
    tallies: dict[str, Tally] = {}
    rules = {"letter": 0, "prefix": 0, "answer_is": 0, "failed": 0}
    failed, out_of_range = [], []
    for problem in problems:
        answered = problem.pid in answers
        extraction = extract_letter(answers[problem.pid]) if answered else Extraction(None, "failed")
        if answered:
            rules[extraction.rule] += 1
        index = choice_index(extraction, problem)
        if extraction.letter is None:
            if answered:
                failed.append(problem.pid)
        elif index is None:
            out_of_range.append(problem.pid)
        hit = index == problem.answer
        for group in problem.groups:
            tallies.setdefault(group, Tally()).add(hit)
    groups = {g: tallies[g] for g in GROUP_ORDER if g in tallies} | tallies
    return ScienceQAResult(split, groups, rules, failed, out_of_range, list(missing))
