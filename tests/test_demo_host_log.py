"""The demo echoes training progress from the host's own `trainer_log.jsonl`, read as it grows."""

from __future__ import annotations

import json

from llava_lf.demo.host_cli import TrainerLogTail


def _row(step: int, loss: float) -> bytes:
    return (json.dumps({"current_steps": step, "total_steps": 3, "loss": loss, "epoch": step / 3}) + "\n").encode()


def test_rows_arrive_once_and_a_half_written_line_waits(tmp_path):
    log = tmp_path / "trainer_log.jsonl"
    tail = TrainerLogTail(log)
    assert tail.new_rows() == []  # the host has not written it yet

    log.write_bytes(_row(1, 2.5) + _row(2, 2.0)[:10])  # the second row is still being written
    assert [row["current_steps"] for row in tail.new_rows()] == [1]
    with open(log, "ab") as handle:
        handle.write(_row(2, 2.0)[10:])
    assert [(row["current_steps"], row["loss"]) for row in tail.new_rows()] == [(2, 2.0)]
    assert tail.new_rows() == []


def test_a_restarted_run_is_read_from_its_start(tmp_path):
    log = tmp_path / "trainer_log.jsonl"
    tail = TrainerLogTail(log)
    log.write_bytes(_row(1, 2.5) + _row(2, 2.0) + _row(3, 1.5))
    assert len(tail.new_rows()) == 3
    log.write_bytes(_row(1, 9.0))  # the host removes the old log when a run starts over
    assert [row["loss"] for row in tail.new_rows()] == [9.0]
