"""`llava-lf eval table` end to end: all twelve benchmarks on stand-in files shaped as the real ones, the tiny
model built from config, a loopback judge; then a rerun that resumes, and the ways a table goes wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import eval_standins
from helpers.fake_openai import FakeOpenAI, ok

import yaml
from llava_lf.cli import run
from llava_lf.evaluation import published

pytestmark = [pytest.mark.timeout(300), pytest.mark.host]  # predict loads the host's template

COLUMNS = list(published.LLAVA_1_5)
SERVER_SCORED = {"VQAv2", "VizWiz", "MMB", "MMB-CN"}


def judge_reply(body: dict, index: int):
    """LLaVA-Bench's judge puts two scores on its first line; MM-Vet's grader completes a correctness score."""
    user = body["messages"][-1]["content"]
    return ok("8 6\nBoth answer the question.") if "[Assistant 2]" in user else ok("0.5")


def write_yaml(path, entries: dict, model, out_dir, judge_url: str | None, **extra) -> None:
    config = {"model": str(model), "device": "cpu", "batch_size": 4, "max_new_tokens": 3, "out_dir": str(out_dir),
              "benchmarks": entries} | extra
    if judge_url:
        config["judge"] = {"base_url": judge_url, "model": "judge-v1", "key_env": "", "backoff": 0.01}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def table_rows(markdown: str) -> dict[str, list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {"header": header[1:]} | {cells[0]: cells[1:] for cells in
                                     ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


@pytest.mark.slow
def test_the_whole_table_on_stand_ins_then_a_rerun_resumes(tmp_path, tiny_llava, capsys):
    entries = eval_standins.write_all(tmp_path / "data")
    out = tmp_path / "table"
    config = tmp_path / "table.yaml"
    with FakeOpenAI(respond=judge_reply, served_model="judge-0613") as judge:
        write_yaml(config, entries, tiny_llava, out, judge.url)
        assert run(["eval", "table", str(config)]) == 0
        first = capsys.readouterr().out
        judged = len(judge.seen)
        assert run(["eval", "table", str(config)]) == 0  # a rerun: nothing asked again, judge replies cached
        second = capsys.readouterr().out
    assert judged > 0 and len(judge.seen) == judged

    # Progress per benchmark, in the paper's column order.
    starts = [first.index(f"] {column} (") for column in COLUMNS]
    assert starts == sorted(starts) and f"[12/12] {COLUMNS[-1]}" in first
    assert "table: 8 scored, 4 to upload, 0 skipped, 0 failed" in first
    assert re.findall(r"(\d+) answered now", second) == ["0"] * 12

    rows = table_rows((out / "table.md").read_text())
    assert rows["header"] == COLUMNS
    for column, cell in zip(COLUMNS, rows["this run"]):
        if column in SERVER_SCORED:
            assert cell == "upload"
        else:
            float(cell)  # a number
    for model, values in zip(published.TABLE_MODELS, zip(*published.LLAVA_1_5.values())):
        assert rows[model] == [f"{value:g}" for value in values]

    outcomes = {o["column"]: o for o in json.loads((out / "table.json").read_text())["outcomes"]}
    for column in COLUMNS:
        payload_dir = out / outcomes[column]["benchmark"]
        assert payload_dir.is_dir() and (out / "predictions" / f"{outcomes[column]['benchmark']}.jsonl").is_file()
    # Each scored cell is the benchmark's own result, read back from its JSON.
    assert outcomes["POPE"]["value"] == round(100 * json.loads((out / "pope" / "pope.json").read_text())["mean_f1"], 1)
    assert outcomes["GQA"]["value"] == round(json.loads((out / "gqa" / "gqa.json").read_text())["accuracy"]["all"], 1)
    assert outcomes["MM-Vet"]["value"] == 50.0  # the grader said 0.5 to every answer
    assert outcomes["LLaVA-W"]["value"] == 75.0  # 6 against the reference's 8
    uploads = {column: outcomes[column]["detail"] for column in SERVER_SCORED}
    assert uploads["VQAv2"].endswith("vqav2_upload.json") and uploads["MMB-CN"].endswith("mmbench_cn_upload.xlsx")
    assert all(Path(path).is_file() for path in uploads.values())
    assert (out / "table.png").stat().st_size > 20_000


def test_benchmarks_left_out_are_skipped_and_a_judge_is_needed_for_the_judged_ones(tmp_path, tiny_llava, capsys):
    entries = {name: {k: str(v) for k, v in write(tmp_path / name).items()}
               for name, write in (("pope", eval_standins.pope), ("llava-bench", eval_standins.llava_bench))}
    config = tmp_path / "table.yaml"
    write_yaml(config, entries | {"gqa": None}, tiny_llava, tmp_path / "out", judge_url=None)
    assert run(["eval", "table", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "table: 1 scored, 0 to upload, 11 skipped, 0 failed" in printed
    outcomes = {o["column"]: o for o in json.loads((tmp_path / "out" / "table.json").read_text())["outcomes"]}
    assert outcomes["POPE"]["status"] == "scored"
    assert outcomes["LLaVA-W"] == outcomes["LLaVA-W"] | {"status": "skipped"}
    assert "needs a judge" in outcomes["LLaVA-W"]["detail"] and outcomes["GQA"]["detail"] == "not in the YAML"
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "- LLaVA-W (llava-bench): needs a judge" in markdown and "- MME (mme): not in the YAML" in markdown


def test_a_failed_benchmark_does_not_stop_the_others(tmp_path, tiny_llava, capsys):
    pope = {k: str(v) for k, v in eval_standins.pope(tmp_path / "pope").items()}
    gqa = {k: str(v) for k, v in eval_standins.gqa(tmp_path / "gqa").items()}
    (tmp_path / "gqa" / "llava_gqa_testdev_balanced.jsonl").write_text('{"question_id": "1", "text": "no image"}\n')
    config = tmp_path / "table.yaml"
    write_yaml(config, {"gqa": gqa, "pope": pope}, tiny_llava, tmp_path / "out", judge_url=None)
    assert run(["eval", "table", str(config)]) == 2
    captured = capsys.readouterr()
    assert "table: 1 scored, 0 to upload, 10 skipped, 1 failed" in captured.err
    assert "gqa" in captured.err and "line 1" in captured.err and "`image` must be a string" in captured.err
    outcomes = {o["column"]: o for o in json.loads((tmp_path / "out" / "table.json").read_text())["outcomes"]}
    assert outcomes["GQA"]["status"] == "failed" and outcomes["POPE"]["status"] == "scored"
    assert "Failed (fix and run the table again" in (tmp_path / "out" / "table.md").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"benchmarks": {"pope": {"image_folder": "x", "colour": "red"}}}, "benchmarks: pope: unknown option(s) colour"),
    ({"benchmarks": {"vqa": {"questions": "x"}}}, "benchmarks: vqa not in the table"),
    ({"judge": {"url": "http://x"}}, "judge: unknown key(s) url"),
    ({"modle": "x"}, "unknown key(s) modle"),
])
def test_mistakes_in_the_yaml_are_named(tmp_path, capsys, change, message):
    config = {"model": "m", "out_dir": str(tmp_path / "out"), "benchmarks": {}} | change
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    code = run(["eval", "table", str(tmp_path / "t.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
