"""`llava-lf eval NAME predict` across processes (`evaluation/parts.py`, `ranks.py`): under `torchrun
--nproc_per_node 2` (two CPU processes meeting over gloo) on the tiny model, the merged answer file is the
one-process file byte for byte; a rank killed with SIGKILL loses nothing and the rerun repeats nothing, with
another rank count too; parts left by any earlier rank count are taken in. One one-process run (in this process)
is the reference for every test."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import BIN, free_port
from test_eval_data import run_cli, tiny_image

from llava_lf.evaluation import phases
from llava_lf.evaluation.parts import deal, parts_folder, run_on_ranks
from llava_lf.evaluation.predict import GenerationSettings, PredictionRequest, Predictor, model_id
from llava_lf.evaluation.prediction_file import batches_to_ask
from llava_lf.evaluation.ranks import Ranks, RanksError, ranks_from_env
from llava_lf.evaluation.tasks import TASKS

pytestmark = pytest.mark.host  # predict builds prompts with the host's template

BATCH = 2  # small, so a rank is still answering when it is killed; prompts of several lengths, so batches pad
NEW_TOKENS = 4
PER_SPLIT = 24


def write_questions(root: Path) -> Path:
    """POPE's per-split files: prompts of several lengths (so a batch pads), four pictures."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    nouns = ["cat", "dog", "red ball", "small green square", "person holding an umbrella"]
    for split_index, split in enumerate(("random", "popular")):
        rows = [{"question_id": i + 1, "image": f"COCO_val2014_{(i + split_index) % 4:012d}.jpg",
                 "text": f"Is there a {nouns[(i * 3 + split_index) % len(nouns)]} in the image?",
                 "label": "yes" if i % 3 else "no"} for i in range(PER_SPLIT)]
        (annotations / f"coco_pope_{split}.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for index in range(4):
        tiny_image(root / "val2014" / f"COCO_val2014_{index:012d}.jpg", (60 * index, 200 - 40 * index, 90))
    return annotations


def predict_argv(root: Path, model: Path, out: Path) -> list[str]:
    return ["pope", "predict", "--model", str(model), "--annotations", str(root / "annotations"), "--image-folder",
            str(root / "val2014"), "--max-new-tokens", str(NEW_TOKENS), "--batch-size", str(BATCH), "--device",
            "auto", "--out", str(out)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_llava):
    """The questions, and the answer file one process writes (the reference), with its lines."""
    root = tmp_path_factory.mktemp("distributed")
    write_questions(root)
    reference = root / "one_process.jsonl"
    assert run_cli(*predict_argv(root, tiny_llava, reference)) == 0
    lines = reference.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2 * PER_SPLIT
    return root, reference.read_bytes(), lines


def torchrun(argv: list[str], nproc: int = 2) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(BIN / "torchrun"), "--nproc_per_node", str(nproc), "--master_port", str(free_port()),
                             str(BIN / "llava-lf"), "eval", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def odd_batch_lines(lines: list[bytes]) -> list[bytes]:
    """Rank 1's share of a fresh 2-rank run: batches 1, 3, 5, ... of the question list."""
    return [line for index, line in enumerate(lines) if (index // BATCH) % 2 == 1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_write_the_one_process_file_byte_for_byte(tmp_path, tiny_llava, bench):
    root, reference, lines = bench
    out = tmp_path / "two.jsonl"
    process = torchrun(predict_argv(root, tiny_llava, out))
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-4000:]
    assert out.read_bytes() == reference  # the same answers, ids and order
    assert not parts_folder(out).exists()
    share = len(odd_batch_lines(lines))
    assert f"rank 1 of 2 answered {share} of the {len(lines)} left" in output  # each rank its own batches only
    assert f"{len(lines)} questions, 0 already answered, {len(lines)} answered now by 2 processes" in output


def rank_pid(parent: int, rank: int) -> int | None:
    """The worker of torchrun `parent` that runs `rank`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        if f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    return None


def complete_lines(path: Path) -> list[bytes]:
    raw = path.read_bytes() if path.exists() else b""
    return raw[: raw.rfind(b"\n") + 1].splitlines(keepends=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds rank 1's process in /proc")
def test_a_killed_rank_loses_nothing_and_one_process_finishes_without_repeats(tmp_path, tiny_llava, bench, capsys):
    """SIGKILL rank 1 of a 2-process run once its part holds two answers (torchrun then stops rank 0); the parts
    hold each answer once, as the reference has it; a one-process rerun reuses them all and asks only the rest."""
    root, reference, lines = bench
    out = tmp_path / "killed.jsonl"
    part = parts_folder(out) / "rank-1-of-2.jsonl"
    process = torchrun(predict_argv(root, tiny_llava, out))
    deadline = time.monotonic() + 200
    worker = None
    while worker is None or len(complete_lines(part)) < 2:  # found first, so the kill follows the answers at once
        assert process.poll() is None, f"finished before it could be killed:\n{process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "rank 1 wrote no answers within 200 s"
        worker = worker or rank_pid(process.pid, 1)
        time.sleep(0.01)
    os.kill(worker, signal.SIGKILL)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output[-3000:]
    assert not out.exists()  # nothing merged from a run that did not finish
    kept = [line for path in sorted(parts_folder(out).glob("*.jsonl")) for line in complete_lines(path)]
    assert len(kept) == len(set(kept)) and set(kept) <= set(lines)  # each answer once, as one process writes it
    rank_one = complete_lines(part)
    assert len(rank_one) < len(odd_batch_lines(lines)), "the kill did not land mid-run"
    assert set(rank_one) <= set(odd_batch_lines(lines))  # rank 1 answered only its own batches

    capsys.readouterr()
    assert run_cli(*predict_argv(root, tiny_llava, out)) == 0
    printed = capsys.readouterr().out
    assert f"{len(lines)} questions, {len(kept)} already answered, {len(lines) - len(kept)} answered now" in printed
    assert out.read_bytes() == reference
    assert not parts_folder(out).exists()


def _pope_run(root: Path, model: Path, out: Path):
    """What `phases.predict` hands the run: the requests, the model's id, the settings, the answer keys."""
    parser = argparse.ArgumentParser()
    task = TASKS["pope"]
    phases.add_phase_arguments(parser, task, "predict")
    args = parser.parse_args(predict_argv(root, model, out)[2:])
    return task.prediction_requests(args), model_id(model), GenerationSettings("llava_v1", NEW_TOKENS, "float32"), task


def run_threads(world_size: int, root: Path, model: Path, out: Path):
    """`world_size` ranks of one run as threads of this process, meeting at a thread barrier: the run's logic
    without the launch (the torchrun tests launch it for real)."""
    requests, identity, settings, task = _pope_run(root, model, out)
    meeting = threading.Barrier(world_size, timeout=120)
    results: dict[int, object] = {}

    def rank(number: int) -> None:
        try:
            results[number] = run_on_ranks(requests, out, identity, lambda: Predictor(model, max_new_tokens=NEW_TOKENS),
                                           settings, Ranks(number, world_size), BATCH, key_of=task.key_of,
                                           wait=meeting.wait)
        except BaseException as error:  # reported by the test thread
            results[number] = error
            meeting.abort()

    threads = [threading.Thread(target=rank, args=(number,)) for number in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in results.values():
        if isinstance(outcome, BaseException):
            raise outcome
    return results


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_what_any_earlier_rank_count_left_is_taken_in(tmp_path, tiny_llava, bench):
    """A one-process run killed after its first answer, then a 3-rank and a 2-rank run killed (torn last lines in
    a part this run owns and in one nobody owns, a whole last record without its newline): two ranks finish, and
    the file is the reference."""
    root, reference, lines = bench
    out = tmp_path / "resumed.jsonl"
    out.write_bytes(lines[0])  # batch 0 half answered
    folder = parts_folder(out)
    folder.mkdir()
    (folder / "rank-0-of-3.jsonl").write_bytes(lines[3] + lines[4] + lines[9])
    (folder / "rank-2-of-3.jsonl").write_bytes(lines[5] + lines[6][:20])  # torn; no rank 2 now
    (folder / "rank-1-of-2.jsonl").write_bytes(lines[12] + lines[13][:25])  # torn; rank 1 appends here now
    (folder / "rank-0-of-2.jsonl").write_bytes(lines[15].rstrip(b"\n"))  # whole, newline missing; rank 0's now
    answered = {0, 3, 4, 9, 5, 12, 15}  # line numbers, which are question numbers
    results = run_threads(2, root, tiny_llava, out)
    assert out.read_bytes() == reference
    assert not folder.exists()
    merged = results[0]
    assert (merged.questions, merged.already_answered, merged.answered_now) == (len(lines), 7, len(lines) - 7)
    assert merged.torn_line_dropped
    # Rank 1 asked every other batch still holding a question, and wrote only those questions' answers.
    to_ask = [b for b in range(len(lines) // BATCH) if set(range(b * BATCH, (b + 1) * BATCH)) - answered]
    share = [q for b in to_ask[1::2] for q in range(b * BATCH, (b + 1) * BATCH) if q not in answered]
    assert results[1].answered_now == len(share)


def _requests(count: int) -> list[PredictionRequest]:
    return [PredictionRequest(str(number), f"question {number}", None) for number in range(count)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_the_ranks_ask_exactly_the_one_process_batches(world_size):
    """Whatever is answered already, the ranks' shares together are the one-process run's batches, each a fixed
    slice of the question list (so each answer keeps the batch-mates, and the padding, it has in one process)."""
    import random

    questions = _requests(23)
    grid = [questions[start : start + 4] for start in range(0, 23, 4)]
    rng = random.Random(world_size)
    for _ in range(20):
        answered = {request.key for request in questions if rng.random() < 0.4}
        one_process = batches_to_ask(questions, answered, 4)
        assert all(batch in grid for batch in one_process)
        assert one_process == [batch for batch in grid if any(r.key not in answered for r in batch)]
        shares = [deal(one_process, Ranks(rank, world_size)) for rank in range(world_size)]
        asked = [batch for share in shares for batch in share]
        assert sorted(map(str, asked)) == sorted(map(str, one_process))  # all of them, each once
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_ranks_come_from_the_launchers_variables():
    assert ranks_from_env({}) == Ranks(0, 1, 0)
    assert ranks_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Ranks(1, 2, 1)
    assert ranks_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == Ranks(3, 4, 3)  # one machine: local = global
    with pytest.raises(RanksError, match="RANK is not set"):
        ranks_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(RanksError, match=r"RANK=2 is not in 0\.\.1"):
        ranks_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(RanksError, match="WORLD_SIZE='two' is not a whole number"):
        ranks_from_env({"WORLD_SIZE": "two"})
