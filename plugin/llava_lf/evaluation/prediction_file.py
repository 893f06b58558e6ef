"""The predictions JSONL: one answer per question, appended as answers arrive, so a run resumes.

Each line is a LLaVA answer-file record (`question_id`, `prompt`, `text`, `answer_id`, `model_id`,
`metadata`), so LLaVA's own scorers read our files and ours read theirs. `metadata` holds what makes an
answer reusable: a hash of the question's prompt and image bytes, and the generation settings. A resumed
run reuses an answer only when the question is still the same (by id, stored prompt and hash), the model
is the same and the settings are the same; otherwise it refuses rather than mix.

A run killed mid-write leaves at most one torn last line; reading drops it (the question is simply asked
again). A last line that is a whole record without its newline is kept. Anything else that does not
parse is an error naming the line, never skipped quietly.

A question is found by its id, or by its id and prompt where the benchmark repeats ids (TextVQA and MME use
the image as `question_id`): the benchmark's `key_of` says which. A question answered on two lines is read
by a repeat policy: our files refuse two different answers; the benchmarks whose LLaVA converter keeps the
later line (VQAv2, VizWiz, MMBench) read them that way. `answered` is the one check, for every `score`, that
the answers belong to the questions asked and that every needed one is answered.

Questions are asked in fixed batches: slices of `--batch-size` of the question list, whichever of them are
already answered. A batch with any question left is asked whole and only its missing answers are written, so
every answer comes out of the very batch a clean one-process run asks it in (left padding changes the logits in
their last bits: a near-tie could otherwise flip with the company a question keeps). Runs across processes
(`ranks.py`, `parts.py`) share these batches out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Container, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llava_lf.errors import LlavaLfError

if TYPE_CHECKING:
    from .predict import GenerationSettings, PredictionRequest, Predictor


class PredictionFileError(LlavaLfError):
    pass


@dataclass(frozen=True)
class PredictionRecord:
    question_id: int | str  # as the question file spells it
    prompt: str
    text: str  # the model's answer
    model_id: str  # which model answered: base path, plus adapter path when one was applied
    answer_id: str = ""
    metadata: dict = field(default_factory=dict)  # ours: question_hash, settings


@dataclass(frozen=True)
class PredictRunSummary:
    path: Path
    questions: int
    already_answered: int
    answered_now: int  # by this process; rank 0 of a run across processes counts every rank's
    torn_line_dropped: bool
    rank: int = 0
    world_size: int = 1
    part: Path | None = None  # a run across processes: where this rank wrote its answers


def by_id(record: PredictionRecord) -> str:
    return str(record.question_id)


def id_prompt_key(question_id: int | str, prompt: str) -> str:
    return f"{question_id}\x1f{prompt}"


def by_id_and_prompt(record: PredictionRecord) -> str:
    """For files whose ids repeat: LLaVA's TextVQA and MME scorers tell answers apart by id and prompt."""
    return id_prompt_key(record.question_id, record.prompt)


KeyOf = Callable[[PredictionRecord], str]


Repeats = Literal["refuse", "latest"]
"""What a second line for the same question means. `refuse` (our files): the same answer again is one answer,
a different one is an error. `latest` (as LLaVA's converters read a file): the later line wins."""


@dataclass(frozen=True)
class AnswerFile:
    path: Path
    records: dict[str, PredictionRecord]  # by key, in the order questions first appear
    lines: int  # non-empty lines, a torn last one included
    torn: bool  # the file ends in a partial line (dropped)
    unterminated: bool  # the file ends in a whole record without its newline (kept)
    overridden: list[str] = field(default_factory=list)  # `latest`: keys a later line answered differently
    raw: dict[str, bytes] = field(default_factory=dict)  # by key: the kept record's line as written, no newline


def _parse(line: bytes, path: Path, number: int) -> PredictionRecord:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _bad_line(path, number, f"not JSON ({error})") from None
    try:
        # Extra fields are fine, so answer files from LLaVA's own scripts can be scored too.
        metadata = row.get("metadata")
        question_id, text = row["question_id"], row["text"]
        if not isinstance(question_id, int | str) or isinstance(question_id, bool):
            raise TypeError(f"question_id {question_id!r} is neither a number nor a string")
        if not isinstance(text, str):
            raise TypeError(f"text {text!r} is not a string")
        return PredictionRecord(question_id, str(row.get("prompt", "")), text, str(row.get("model_id", "")),
                                str(row.get("answer_id", "")), metadata if isinstance(metadata, dict) else {})
    except (KeyError, TypeError, AttributeError) as error:
        raise _bad_line(path, number, f"{type(error).__name__}: {error}") from None


def _bad_line(path: Path, number: int, why: str) -> PredictionFileError:
    return PredictionFileError(f"{path}, line {number}: not a prediction record; fix or delete that line (a record is "
                               f"a JSON object with question_id and text; prompt and model_id are optional)\n"
                               f"  line {number}: {why}")


def read_answer_file(path: Path, key_of: KeyOf = by_id, repeats: Repeats = "refuse") -> AnswerFile:
    """Every answer of `path` by `key_of` (nothing when the file does not exist yet). A torn last line is dropped;
    any other line that is not a record is an error naming it; a repeated question is read by `repeats`."""
    if not path.exists():
        return AnswerFile(path, {}, 0, False, False)
    lines = path.read_bytes().split(b"\n")
    tail, torn, unterminated = lines[-1], False, False
    body = lines[:-1]
    if tail.strip():
        try:  # a whole record missing only its newline is an answer, not a torn write
            _parse(tail, path, len(lines))
            body.append(tail)
            unterminated = True
        except PredictionFileError:
            torn = True
    records: dict[str, PredictionRecord] = {}
    raw: dict[str, bytes] = {}
    first_line: dict[str, int] = {}
    overridden: list[str] = []
    for number, line in enumerate(body, start=1):
        if not line.strip():
            continue
        record = _parse(line, path, number)
        key = key_of(record)
        if key in records:
            differs = records[key].text != record.text
            if differs and repeats == "refuse":
                raise PredictionFileError(
                    f"{path}, lines {first_line[key]} and {number}: question_id {record.question_id!r} (prompt "
                    f"{record.prompt[:60]!r}) is answered twice, differently; keep one of the lines")
            if repeats == "refuse":
                continue  # the same answer twice (a question asked twice): one answer, its first line
            overridden += [key] if differs else []
        records[key], raw[key] = record, line
        first_line.setdefault(key, number)
    count = sum(1 for line in lines if line.strip())
    return AnswerFile(path, records, count, torn, unterminated, overridden, raw)


def read_answers(path: Path, key_of: KeyOf = by_id, repeats: Repeats = "refuse") -> AnswerFile:
    """The answer file a `score` reads: as `read_answer_file`, and it must exist."""
    if not path.is_file():
        raise PredictionFileError(f"no predictions file at {path}; run the benchmark's `predict` phase first")
    return read_answer_file(path, key_of, repeats)


def read_predictions(path: Path, key_of: KeyOf = by_id) -> tuple[dict[str, PredictionRecord], bool]:
    """Records keyed by `key_of` (question id by default), and whether a torn last line was dropped."""
    state = read_answer_file(path, key_of)
    return state.records, state.torn


def drop_torn_tail(path: Path) -> None:
    raw = path.read_bytes()
    with open(path, "r+b") as handle:
        handle.truncate(raw.rfind(b"\n") + 1)


def check_same_run(path: Path, records: dict[str, PredictionRecord], model_id: str, settings: dict) -> None:
    others = sorted({record.model_id for record in records.values()} - {model_id})
    if others:
        raise PredictionFileError(
            f"{path} holds answers from another model ({others[0]}), not {model_id}; "
            "write to a new --out file (or delete this one) so two models' answers are never mixed")
    for record in records.values():
        stored = record.metadata.get("settings")
        if stored != settings:
            changed = (sorted(k for k in settings if stored.get(k) != settings[k]) if isinstance(stored, dict)
                       else ["(none recorded)"])
            raise PredictionFileError(
                f"{path} holds answers made with other generation settings ({', '.join(changed)}: stored "
                f"{stored}, now {settings}); write to a new --out file so two settings' answers are never mixed")


def _stale(records: dict[str, PredictionRecord], requests: Sequence[PredictionRequest],
           hashes: dict[str, str]) -> list[str]:
    """Ids whose stored answer belongs to a question that has since changed (prompt or image)."""
    stale = []
    for request in requests:
        record = records.get(request.key)
        if record is not None and (record.prompt != request.stored_prompt
                                   or record.metadata.get("question_hash") != hashes[request.key]):
            stale.append(request.key)
    return stale


def new_record(request: PredictionRequest, text: str, model_id: str, settings: dict, question_hash: str) -> PredictionRecord:
    # The answer's id is a digest of what made it, not a random one: the same run gives the same bytes, however
    # many processes answered it.
    made_of = json.dumps([request.key, question_hash, model_id, settings, text], ensure_ascii=False, sort_keys=True)
    return PredictionRecord(request.answer_file_id, request.stored_prompt, text, model_id,
                            hashlib.sha256(made_of.encode()).hexdigest()[:32],
                            {"question_hash": question_hash, "settings": settings})


def record_line(record: PredictionRecord) -> str:
    return json.dumps(asdict(record), ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Questions:
    """A run's questions, each once, in question order, with what each one is (`predict.question_hash`)."""
    requests: list[PredictionRequest]
    hashes: dict[str, str]  # by key


def distinct_questions(requests: Sequence[PredictionRequest]) -> Questions:
    """A question asked twice (same key, prompt and image) is asked once; the same key for another question is
    an error."""
    from .predict import question_hash

    digests: dict[Path, str] = {}
    hashes: dict[str, str] = {}
    unique: list[PredictionRequest] = []
    for request in requests:
        digest = question_hash(request, digests)
        if request.key not in hashes:
            hashes[request.key] = digest
            unique.append(request)
        elif hashes[request.key] != digest:
            raise PredictionFileError(
                f"question id {request.key!r} is asked twice with different prompts or images; question ids "
                "must tell questions apart (check the question file)")
    return Questions(unique, hashes)


def check_resumable(path: Path, records: dict[str, PredictionRecord], questions: Questions, model_id: str,
                    settings: dict) -> None:
    """`records` (read from `path`) may be added to by this run: same model, same settings, questions unchanged."""
    check_same_run(path, records, model_id, settings)
    stale = _stale(records, questions.requests, questions.hashes)
    if stale:
        raise PredictionFileError(
            f"{path} answers {len(stale)} question(s) whose prompt or image has changed since (first: {stale[:3]}); "
            "write to a new --out file (or delete this one): an answer to an edited question is not its answer")


def batches_to_ask(questions: Sequence[PredictionRequest], answered: Container[str],
                   batch_size: int) -> list[list[PredictionRequest]]:
    """The fixed batches (slices of `batch_size` of the question list) that still hold an unanswered question."""
    if batch_size < 1:
        raise PredictionFileError(f"--batch-size {batch_size}: a batch holds at least one question")
    batches = [list(questions[start : start + batch_size]) for start in range(0, len(questions), batch_size)]
    return [batch for batch in batches if any(request.key not in answered for request in batch)]


def append_answers(path: Path, predictor: Predictor, batches: Sequence[Sequence[PredictionRequest]],
                   answered: Container[str], questions: Questions, model_id: str, settings: dict,
                   end_last_line: bool = False, desc: str = "predict") -> int:
    """Ask `batches` whole and append the answers `answered` lacks to `path`, each as soon as its batch is done;
    how many were written. `end_last_line`: the file ends in a kept record without its newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    by_key = {request.key: request for batch in batches for request in batch}
    written = 0
    with open(path, "a", encoding="utf-8") as handle:
        if end_last_line:
            handle.write("\n")  # end the kept last record before appending after it
        for prediction in predictor.predict_batches(batches, desc=desc):
            if prediction.key in answered:
                continue  # asked only so that its batch-mates keep their company
            record = new_record(by_key[prediction.key], prediction.answer, model_id, settings,
                                questions.hashes[prediction.key])
            handle.write(record_line(record))
            handle.flush()  # a killed run keeps every answer written so far
            written += 1
    return written


def run_predictions(requests: Sequence[PredictionRequest], path: Path, model_id: str,
                    predictor_factory: Callable[[], Predictor], settings: GenerationSettings,
                    batch_size: int = 32, desc: str = "predict", key_of: KeyOf = by_id) -> PredictRunSummary:
    """Answer every request not yet in `path`, appending each answer as soon as its batch is done (one process;
    `parts.run_on_ranks` is the run across processes).

    The model is loaded only when something is left to answer, so re-running a finished run is free. A
    question asked twice (same key, prompt and image) is answered once.
    """
    wanted = asdict(settings)
    state = read_answer_file(path, key_of)
    questions = distinct_questions(requests)
    check_resumable(path, state.records, questions, model_id, wanted)
    if state.torn:
        drop_torn_tail(path)
    pending = sum(request.key not in state.records for request in questions.requests)
    summary = PredictRunSummary(path, len(questions.requests), len(questions.requests) - pending, pending, state.torn)
    if not pending:
        return summary
    batches = batches_to_ask(questions.requests, state.records, batch_size)
    append_answers(path, predictor_factory(), batches, state.records, questions, model_id, wanted,
                   state.unterminated, desc)
    return summary


PARTIAL = "to score the answered ones"


def answered(keys: Sequence[str], answers: AnswerFile, allow_partial: bool = False, hint: str = "",
             needed: Sequence[str] | None = None,
             if_partial: str = PARTIAL) -> tuple[dict[str, PredictionRecord], list[str]]:
    """The answer record per question key, and the keys of `needed` (default: every key) left unanswered. An
    answer to a question not in `keys` is an error (`hint` says what to check); an unanswered needed one is
    too, unless `allow_partial` (`if_partial` says what the flag then does)."""
    wanted = set(keys)
    unknown = sorted(set(answers.records) - wanted)
    if unknown:
        raise PredictionFileError(
            f"{answers.path} answers {len(unknown)} question(s) this benchmark does not ask (first: {unknown[:3]}); "
            "check that the predictions and the question files (and split) belong together" + hint)
    must = keys if needed is None else needed
    missing = list(dict.fromkeys(key for key in must if key not in answers.records))
    if missing and not allow_partial:
        count = len(set(must))
        raise PredictionFileError(
            f"{answers.path} answers {count - len(missing)} of {count} questions ({len(missing)} missing, first: "
            f"{missing[:3]}); run `predict` again to finish (it resumes), or pass --allow-partial {if_partial}")
    return {key: answers.records[key] for key in keys if key in answers.records}, missing


def records_for(keys: Sequence[str], path: Path, allow_partial: bool = False, hint: str = "",
                key_of: KeyOf = by_id) -> tuple[dict[str, PredictionRecord], list[str]]:
    """The answer record per question key, and the keys left unanswered (only allowed with `allow_partial`)."""
    return answered(keys, read_answers(path, key_of), allow_partial, hint)


def answers_for(keys: Sequence[str], path: Path, allow_partial: bool = False, hint: str = "",
                key_of: KeyOf = by_id) -> tuple[dict[str, str], list[str]]:
    """Answer text per question key, and the keys left unanswered (only allowed with `allow_partial`)."""
    records, missing = records_for(keys, path, allow_partial, hint, key_of)
    return {key: record.text for key, record in records.items()}, missing
