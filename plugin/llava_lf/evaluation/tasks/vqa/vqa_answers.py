"""EvalAI's answer normalisation (MMF's EvalAIAnswerProcessor, which LLaVA's m4c_evaluator.py uses for VQAv2,
VizWiz and TextVQA) and M4C's TextVQA soft accuracy, rule for rule, quirks included; plus the answer-file
reader, upload writer and change counts of LLaVA's VQAv2 and VizWiz converters (a later line wins)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.evaluation.prediction_file import AnswerFile, answered, read_answers
from llava_lf.evaluation.report import listing, markdown_table

# MMF's table, entry for entry, its oddities kept: keys with capitals ("Im", "Ive") never match because the
# text is lower-cased first, "let's"/"she's" map to themselves, and "somebody'd" maps to "somebodyd".
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
# "none" is a number word here, so the answer "none" is uploaded as "0".
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION_MARKS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                     ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d),+(?=\d)")
# MMF's pattern starts with "(?!<=\d)", a typo for a lookbehind that tests nothing (the next character is the
# period), so a period is deleted whenever no digit follows it.
_PERIOD_WITHOUT_DIGIT = re.compile(r"\.(?!\d)")
# MMF passes re.UNICODE (32) where re.sub takes its count: only the first 32 such periods go.
MAX_PERIODS_DELETED = int(re.UNICODE)

SOFT_SCORE_ANSWERS = 10  # M4C asserts exactly 10 human answers per question


def _tokenized(text: str) -> str:
    """Step 1-2: lower-case, drop commas and question marks, split off 's, whitespace to spaces."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return text.replace("\n", " ").replace("\t", " ").strip()


def _without_punctuation(original: str) -> str:
    """Step 3-4: each mark is deleted when the string as it came in has it beside a space, else spaced out."""
    digit_comma = _DIGIT_COMMA_DIGIT.search(original) is not None  # never true: commas went in step 1
    text = original
    for mark in PUNCTUATION_MARKS:
        beside_space = f"{mark} " in original or f" {mark}" in original
        text = text.replace(mark, "" if beside_space or digit_comma else " ")
    return _PERIOD_WITHOUT_DIGIT.sub("", text, count=MAX_PERIODS_DELETED)


def _words(text: str) -> str:
    """Step 5: number words to digits, articles dropped, contractions restored."""
    kept = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            kept.append(CONTRACTIONS.get(word, word))
    return " ".join(kept)


def normalize_answer(text: str) -> str:
    """EvalAI's normalisation of one answer, as uploaded to the VQAv2/VizWiz servers and scored by M4C."""
    return _words(_without_punctuation(_tokenized(text)))


def soft_scores(gt_answers: Sequence[str]) -> dict[str, float]:
    """M4C: each distinct (normalised) human answer's score, the mean over the 10 leave-one-out subsets of
    min(1, matches among the other 9 / 3). Summed in the same order as M4C, so floats agree exactly."""
    answers = [normalize_answer(answer) for answer in gt_answers]
    scores = {}
    for candidate in dict.fromkeys(answers):
        per_subset = [min(1, sum(1 for other, answer in enumerate(answers) if other != left_out
                                 and answer == candidate) / 3) for left_out in range(len(answers))]
        scores[candidate] = sum(per_subset) / len(per_subset)
    return scores


def soft_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """One prediction's M4C score in [0, 1]: its normalised form's soft score, or 0."""
    return soft_scores(gt_answers).get(normalize_answer(prediction), 0.0)


@dataclass(frozen=True)
class LatestAnswers:
    """An answer file read as LLaVA's VQAv2/VizWiz converters read it: one text per question_id, the last
    line for an id winning."""
    file: AnswerFile
    texts: dict[str, str]  # str(question_id) -> text

    @property
    def lines(self) -> int:
        return self.file.lines

    @property
    def overridden(self) -> list[str]:  # ids answered again by a later line (whose text is the one kept)
        return self.file.overridden

    @property
    def torn_tail(self) -> bool:  # an unfinished last line (a killed run) was skipped
        return self.file.torn


def read_latest_answers(path: Path) -> LatestAnswers:
    answers = read_answers(path, repeats="latest")
    return LatestAnswers(answers, {key: record.text for key, record in answers.records.items()})


def answered_texts(keys: Sequence[str], answers: LatestAnswers, allow_partial: bool) -> list[str]:
    """The keys left unanswered: an answer to a question not asked is an error, and so is an unanswered one
    unless `allow_partial` (then it is uploaded as "", which the server scores 0)."""
    _, missing = answered(keys, answers.file, allow_partial, hint="; they are not in --questions",
                          if_partial='to upload "" for them (the server scores them 0)')
    return missing


@dataclass(frozen=True)
class ProcessingCounts:
    """How the processor changed a set of answers (the upload holds the processed ones)."""
    unchanged: int  # already in normal form
    case_or_spacing: int  # only lower-cased or re-spaced
    rewritten: int  # punctuation, periods, number words, articles or contractions changed
    emptied: int  # nothing left (uploaded as "")
    examples: list[tuple[str, str]]  # (answer, processed) of rewritten ones, first few

    def as_dict(self) -> dict:
        return {"unchanged": self.unchanged, "case_or_spacing": self.case_or_spacing, "rewritten": self.rewritten,
                "emptied": self.emptied, "examples": [{"answer": a, "processed": p} for a, p in self.examples]}


def processing_counts(pairs: Sequence[tuple[str, str]], examples: int = 10) -> ProcessingCounts:
    unchanged = spacing = rewritten = emptied = 0
    shown: list[tuple[str, str]] = []
    for answer, processed in pairs:
        if processed == answer:
            unchanged += 1
        elif processed == " ".join(answer.lower().split()):
            spacing += 1
        else:
            rewritten += 1
            if len(shown) < examples:
                shown.append((answer, processed))
        emptied += bool(answer.strip()) and not processed
    return ProcessingCounts(unchanged, spacing, rewritten, emptied, shown)


@dataclass(frozen=True)
class ProcessedAnswers:
    """The latest answers through the EvalAI processor, as an upload lists them."""
    texts: dict[str, str]  # str(question_id) -> processed answer
    counts: ProcessingCounts  # how the processor changed them
    answer_counts: Counter  # processed answer -> how many times


def process_answers(answers: LatestAnswers) -> ProcessedAnswers:
    processed = {key: normalize_answer(text) for key, text in answers.texts.items()}
    return ProcessedAnswers(processed, processing_counts([(answers.texts[key], processed[key]) for key in processed]),
                            Counter(processed.values()))


def reading_notes(answers: LatestAnswers) -> list[str]:
    """What the report says about how the answer file was read (as LLaVA's converters read it)."""
    notes = []
    if answers.overridden:
        notes.append(f"{len(answers.overridden)} question(s) answered twice, differently; the later line is used, as "
                     f"in LLaVA's converter: {listing(answers.overridden)}")
    if answers.torn_tail:
        notes.append("The predictions file ends in an unfinished line (a killed run); it was skipped.")
    return notes


def processing_table(counts: ProcessingCounts) -> str:
    table = markdown_table(["the EvalAI processor", "answers"], [
        ["left them as they were", str(counts.unchanged)],
        ["only lower-cased or re-spaced them", str(counts.case_or_spacing)],
        ["rewrote them (punctuation, periods, number words, articles, contractions)", str(counts.rewritten)],
        ["left nothing (uploaded as \"\")", str(counts.emptied)]])
    examples = "; ".join(f"{a!r} -> {p!r}" for a, p in counts.examples)
    return table + (f"\n\nRewritten, e.g.: {examples}" if examples else "")


def answer_chart(answer_counts: Counter, total: int, out: Path, title: str) -> Path:
    from llava_lf.common import charts

    top = answer_counts.most_common(10)
    labels = [(a or '""')[:24].replace("$", r"\$") for a, _ in top]  # a "$" pair would start mathtext
    return charts.bar_chart(labels, [100 * n / max(total, 1) for _, n in top], out, title, "percent of answers")


def answer_table(answer_counts: Counter, limit: int = 10) -> str:
    return markdown_table(["most common answers (processed)", "n"],
                          [[(a or '""').replace("|", "\\|"), str(n)] for a, n in answer_counts.most_common(limit)])


def write_json_upload(rows: list[dict], path: Path) -> None:
    """As LLaVA's converters write it: one JSON array, json.dump's default separators."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
