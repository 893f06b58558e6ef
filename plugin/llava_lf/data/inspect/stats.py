"""One dataset's card figures, added to record by record (flat memory) and written out as JSON."""

from __future__ import annotations

from collections import Counter, _count_elements, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from llava_lf.data.convert.report import Problem

from .accumulators import Distribution, RepeatCounter
from .figures import PUNCTUATION, RecordFigures, refuses
from .images import ImageStats
from .plain_batch import PlainBatch
from .seen import SeenHashes
from .tokens import TokenStats

TOP = 15  # rows in each "most common" list
EXAMPLES = 10  # examples kept per problem kind


@dataclass
class DatasetStats:
    label: str
    path: str
    images: ImageStats
    tokens: TokenStats | None
    records: int = 0
    formats: Counter[str] = field(default_factory=Counter)  # llava / converted
    with_image: int = 0
    multi_image: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)
    type_how: Counter[str] = field(default_factory=Counter)
    pairs: Distribution = field(default_factory=Distribution)
    words: Distribution = field(default_factory=Distribution)
    answer_words: defaultdict[str, Distribution] = field(default_factory=lambda: defaultdict(Distribution))
    questions: RepeatCounter = field(default_factory=lambda: RepeatCounter(openings=True))
    answers: RepeatCounter = field(default_factory=RepeatCounter)
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejection_examples: dict[str, list[dict]] = field(default_factory=dict)
    unreadable_records: int = 0  # no turns to read figures from (the converter rejects them as malformed)
    empty_answers: int = 0
    refusal_answers: int = 0
    refusal_records: int = 0
    refusal_examples: list[dict] = field(default_factory=list)
    non_latin: int = 0
    _contents: SeenHashes = field(default_factory=SeenHashes)

    def add_figures(self, index: int, rid: str | None, figures: RecordFigures | None) -> None:
        self.records += 1
        if figures is None:
            self.unreadable_records += 1
            return
        if figures.images:
            self.with_image += 1
            self.multi_image += len(figures.images) > 1
        self.sources[figures.source] += 1
        self.types[figures.type] += 1
        self.type_how[figures.type_how] += 1
        self.pairs.add(figures.pairs)
        self.words.add(figures.words)
        self.answer_words[figures.type].update(figures.answer_words)
        self.questions.update(figures.questions)
        self.answers.update(figures.answers)
        if not self._contents.add_hash(figures.key):
            self._add_duplicate(index, rid)
        self.empty_answers += figures.empty_answers
        if figures.refusals:
            self._add_refusal(index, rid, figures.refusals, next(a for a in figures.answers if refuses(a)))
        self.non_latin += figures.non_latin

    def add_batch(self, start: int, batch: PlainBatch) -> None:
        """The figures of a batch of plain records (`plain_batch`), the first with index `start`: what
        `add_figures` adds for each of them, in C-level passes."""
        count = len(batch.ids)
        self.records += count
        self.formats["llava"] += count
        with_image = count - batch.images.count(None)
        self.with_image += with_image
        if batch.files is not None:
            add_image = self.images.add
            for image, full in zip(batch.images, batch.files):
                if image is not None:
                    add_image(image, full)
        self.sources.update(batch.sources)
        _count_elements(self.types, batch.types)
        self.type_how.update(batch.type_how)
        self.pairs.update(batch.pairs)
        self.words.update(batch.words)
        for kind, answer_words in batch.answer_words.items():
            self.answer_words[kind].update(answer_words)
        self.questions.update(batch.questions)
        self.answers.update(batch.answers)
        for position in self._contents.add_each(batch.keys):
            self._add_duplicate(start + position, batch.ids[position])
        for position, refused, answer in batch.refusals:
            self._add_refusal(start + position, batch.ids[position], refused, answer)
        self.non_latin += batch.non_latin

    def _add_duplicate(self, index: int, rid: str | None) -> None:
        self.duplicates += 1
        if len(self.duplicate_examples) < EXAMPLES:
            self.duplicate_examples.append(_name(index, rid))

    def _add_refusal(self, index: int, rid: str | None, refused: int, first_answer: str) -> None:
        """A record with `refused` answers that decline, the first of them `first_answer`."""
        self.refusal_answers += refused
        self.refusal_records += 1
        if len(self.refusal_examples) < EXAMPLES:
            self.refusal_examples.append({"record": _name(index, rid), "answer": first_answer[:200]})

    def add_problems(self, index: int, rid: str | None, line: Callable[[], int | None], problems: list[Problem]) -> None:
        if not problems:
            return
        self.rejected += 1
        first = problems[0]
        self.reasons[first.reason] += 1
        examples = self.rejection_examples.setdefault(first.reason, [])
        if len(examples) < 3:
            examples.append({"record": _name(index, rid), "line": line(), "field": first.field,
                             "message": first.message, "fix": first.fix})

    def settle(self) -> None:
        """Ready to be sent back by the process that scanned a later part (`split_scan`): the duplicate table
        is not needed by the merge, and the counted hashes go to the spill folder rather than the pipe."""
        self._contents = SeenHashes()
        for counter in (self.questions, self.answers, self.images.uses):
            counter.settle()

    def merge(self, later: DatasetStats, line_offset: int) -> None:
        """Add the figures of the records that follow this part (`later`, whose lines start at 1 where
        it starts: `line_offset` is added). Its duplicate tables were seeded with this part's records,
        so its duplicates are the file's; examples stay in file order. Images are not merged: a split
        scan reads none."""
        for name in ("records", "with_image", "multi_image", "duplicates", "rejected", "unreadable_records",
                     "empty_answers", "refusal_answers", "refusal_records", "non_latin"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in ("formats", "sources", "types", "type_how", "reasons"):  # first-seen order kept
            getattr(self, name).update(getattr(later, name))
        self.pairs.merge(later.pairs)
        self.words.merge(later.words)
        for kind, distribution in later.answer_words.items():
            self.answer_words[kind].merge(distribution)
        self.questions.merge(later.questions)
        self.answers.merge(later.answers)
        self.duplicate_examples = (self.duplicate_examples + later.duplicate_examples)[:EXAMPLES]
        self.refusal_examples = (self.refusal_examples + later.refusal_examples)[:EXAMPLES]
        for reason, examples in later.rejection_examples.items():
            kept = self.rejection_examples.setdefault(reason, [])
            for example in examples[: 3 - len(kept)]:
                kept.append(example | {"line": example["line"] + line_offset})

    def to_json(self) -> dict:
        distinct_questions, _, repeated_questions = self.questions.most_repeated(TOP)
        distinct_answers, _, repeated_answers = self.answers.most_repeated(TOP)
        read = self.records - self.unreadable_records
        first_word, first_two_words = self.questions.opening_counts(PUNCTUATION)
        return {
            "label": self.label, "path": self.path, "formats": dict(self.formats),
            "composition": {
                "records": self.records, "with_image": self.with_image, "text_only": read - self.with_image,
                "multi_image": self.multi_image, "sources": dict(self.sources.most_common()),
                "types": dict(self.types.most_common()), "types_told_by": dict(self.type_how.most_common()),
                "pairs_per_record": _summary(self.pairs),
                "pairs_per_record_counts": {str(k): v for k, v in sorted(self.pairs.counts.items())},
            },
            "lengths": {
                "words_per_record": _summary(self.words),
                "words_per_record_counts": {str(k): v for k, v in sorted(self.words.counts.items())},
                "answer_words_by_type": {kind: _summary(dist) for kind, dist in sorted(self.answer_words.items())},
                "tokens": self.tokens.to_json() if self.tokens is not None else None,
            },
            "diversity": {
                "questions": self.questions.total, "distinct_questions": distinct_questions,
                "answers": self.answers.total, "distinct_answers": distinct_answers,
                "question_first_word": _top(first_word),
                "question_first_two_words": _top(first_two_words),
                "repeated_questions": [{"text": t, "count": n} for t, n in repeated_questions],
                "repeated_answers": [{"text": t, "count": n} for t, n in repeated_answers],
                "exact_duplicate_records": self.duplicates, "duplicate_examples": self.duplicate_examples,
            },
            "images": self.images.to_json(TOP),
            "problems": {
                "rejected": self.rejected, "rejected_share": self.rejected / self.records if self.records else 0.0,
                "reasons": dict(self.reasons.most_common()), "examples": self.rejection_examples,
                "empty_answers": self.empty_answers, "refusal_answers": self.refusal_answers,
                "refusal_records": self.refusal_records, "refusal_examples": self.refusal_examples,
                "non_latin_records": self.non_latin,
            },
        }


def _top(counts: Counter[str]) -> list[dict]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return [{"words": words, "count": n} for words, n in ranked]


def _name(index: int, rid: str | None) -> str:
    return f"record {index}" + (f" (id {rid})" if rid is not None else "")


def _summary(distribution: Distribution) -> dict | None:
    summary = distribution.summary()
    return summary.to_json() if summary else None
