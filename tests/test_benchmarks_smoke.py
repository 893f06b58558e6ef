"""Every script in benchmarks/ runs at tiny size in the suite, so none rots unseen. Each smoke runs the script
as a user would (its own process, its own arguments) and checks the thing it measured: the runs happened, on
the input it was given, through the path it claims; never the script's own arithmetic.

Where a script has its smoke elsewhere, SMOKED names that file, and the coverage test checks that the file
runs it. `fetch_gpu_wheels.sh` downloads from the package index, which a test may not reach: its smoke gives
it a stand-in `pip` that records each request and writes a placeholder wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, REPO

pytestmark = pytest.mark.host  # preprocess_throughput and gpu_run reach llamafactory

BENCH = REPO / "benchmarks"
TESTS = REPO / "tests"
THIS = Path(__file__).name
# Script -> the test file holding its smoke run.
SMOKED = {
    "assemble_peak_rss.py": THIS, "convert_throughput.py": THIS, "convert_parquet_throughput.py": THIS, "eval_predict_speed.py": "test_eval_predict_speed.py",
    "fetch_gpu_wheels.sh": THIS, "generate_throughput.py": THIS, "gpu_run.sh": THIS, "hook_cost.py": THIS,
    "inspect_throughput.py": "test_inspect_benchmark.py", "lora_speed.py": "test_speed_benchmark.py",
    "packing_padding.py": "test_speed_benchmark.py", "preprocess_throughput.py": THIS, "zero_rates.py": THIS,
    "preprocess_next_throughput.py": THIS,
}
PNG = b"\x89PNG\r\n\x1a\n"


def run(command: list[str], timeout: float, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # llava-lf and llamafactory-cli of this venv
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PATH": path, **(env or {})})
    assert done.returncode == 0, f"{command[:3]} exit {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    return done


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {path.name for path in BENCH.iterdir() if path.suffix in (".py", ".sh")}
    assert scripts == set(SMOKED), f"no smoke test for {scripts - set(SMOKED)}; gone: {set(SMOKED) - scripts}"
    for script, test_file in SMOKED.items():
        assert script in (TESTS / test_file).read_text(), f"{test_file} does not run {script}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_preprocess_throughput_runs_both_plugins_through_the_host_loader(tmp_path):
    samples = 12
    done = run([sys.executable, str(BENCH / "preprocess_throughput.py"), "--samples", str(samples), "--chunk", "6",
                "--out", str(tmp_path)], timeout=600)
    result = json.loads((tmp_path / "preprocess_throughput.json").read_text())
    ours, host = result["ours"], result["host"]
    # Each path preprocessed every sample with its own template and plugin, each sample with all 576 image tokens.
    assert (ours["template"], host["template"]) == ("llava_v1", "llava")
    assert host["plugin"] == "LlavaPlugin" and ours["plugin"] != host["plugin"]
    assert ours["rows"] == host["rows"] == samples
    assert ours["image_tokens"] == host["image_tokens"] == samples * 576
    # Through the host's loader: our seam bound cutoff_len there and wrote its trim/drop report for the run.
    report = tmp_path / "runs" / "llava_v1" / "llava_lf_truncation.jsonl"
    assert report.is_file() and not (tmp_path / "runs" / "llava" / report.name).exists()
    for variant in (ours, host):  # the processor's share is timed inside the loader step, so it is the smaller
        assert 0 < variant["processing"]["wall"] <= variant["step"]["wall"]
    # The printed ratios are those of the times in the JSON (the table in docs/performance.md is read off them).
    printed = next(line for line in done.stdout.splitlines() if line.startswith("ratio:"))
    assert printed.startswith(f"ratio: {host['processing']['wall'] / ours['processing']['wall']:.1f}x wall, "
                              f"{host['processing']['cpu'] / ours['processing']['cpu']:.1f}x CPU")
    assert (tmp_path / "preprocess_throughput.png").read_bytes()[:8] == PNG


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_preprocess_next_throughput_counts_what_the_hosts_llava_next_counts(tmp_path):
    samples = 10  # each of the five sizes twice
    done = run([sys.executable, str(BENCH / "preprocess_next_throughput.py"), "--samples", str(samples), "--chunk",
                "5", "--out", str(tmp_path)], timeout=600)
    result = json.loads((tmp_path / "preprocess_next_throughput.json").read_text())
    ours, host = result["ours"], result["host"]
    assert (ours["template"], host["template"]) == ("llava_v1", "llava_next")
    assert host["plugin"] == "LlavaNextPlugin" and ours["plugin"] != host["plugin"]
    assert ours["rows"] == host["rows"] == samples
    # Sample by sample the same image tokens as the host's AnyRes processor, and the sizes really differ in count.
    assert ours["counts"] == host["counts"] and len(set(ours["counts"])) >= 3
    assert len(result["images"]) == samples and {name.split("_")[1] for name in result["images"]} == {
        f"{width}x{height}.jpg" for width, height in result["sizes"]}
    assert (tmp_path / "runs" / "llava_v1" / "llava_lf_truncation.jsonl").is_file()  # through the host's loader
    printed = next(line for line in done.stdout.splitlines() if line.startswith("ratio:"))
    assert printed.startswith(f"ratio: {host['processing']['wall'] / ours['processing']['wall']:.1f}x wall, "
                              f"{host['processing']['cpu'] / ours['processing']['cpu']:.1f}x CPU")


def _gpu_run(tmp_path: Path, phases: str, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    return run(["bash", str(BENCH / "gpu_run.sh"), *arguments], timeout=900,
               env={"PHASES": phases, "PYTHON_BIN": sys.executable, "OUT": str(tmp_path / "out"),
                    "WORK": str(tmp_path / "work"), **env})


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_run_zero_phase_trains_lora_and_projector_at_their_rates_under_zero2_and_zero3(tmp_path):
    """The GPU script's ZeRO phase on CPU, one process: the shipped LoRA YAML (gradient checkpointing on, the
    projector as a PEFT `modules_to_save` copy) under ds_z2 and ds_z3, then zero_rates.py on the results."""
    done = _gpu_run(tmp_path, "zero", DS_ACCELERATOR="cpu", ZERO_S="800", ZERO_RUN_S="380")
    zero = tmp_path / "out" / "zero"
    assert json.loads((zero / "zero_rates.json").read_text()) == {"z2": [], "z3": []}, done.stdout[-3000:]
    runs = json.loads((zero / "lora_speed.json").read_text())["runs"]
    for name, stage in (("z2", 2), ("z3", 3)):
        setup = runs[name]["setup"]
        assert setup["deepspeed_zero_stage"] == stage and setup["gradient_checkpointing"] is True, setup
        losses = runs[name]["loss_first_20"]
        assert len(losses) == 4 and all(loss == loss and loss < 1e4 for loss in losses), losses  # finite
        assert losses[-1] < losses[0], losses
    # Same data, seed and rates: how ZeRO shards the state must not change the curve (measured 1e-4 relative).
    pairs = zip(runs["z2"]["loss_first_20"], runs["z3"]["loss_first_20"], strict=True)
    assert all(abs(z2 - z3) <= 1e-3 * z2 for z2, z3 in pairs), (runs["z2"]["loss_first_20"], runs["z3"]["loss_first_20"])
    assert "z2: ok" in done.stdout and "z3: ok" in done.stdout and "exit 0" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_run_speed_phase_plans_the_7b_runs_without_training(tmp_path):
    """The speed phase as the GPU machine runs it, with `--plan-only`: the 7B shape counted on the meta device,
    every run's settings known to the host's arguments and our optim_args (a misspelled variant key fails)."""
    done = _gpu_run(tmp_path, "speed", "--plan-only")
    plan = json.loads((tmp_path / "out" / "speed" / "lora_speed_plan.json").read_text())
    assert plan["problems"] == []
    assert list(plan["runs"]) == ["stock", "ours", "recompute16", "sdpa_flash", "compiled", "sdpa_cudnn"]
    facts = plan["facts"]
    assert (facts["image_tokens"], facts["vocab_size"], facts["text_layers"]) == (576, 32064, 32)
    assert 6.7e9 < facts["llm_params"] < 6.8e9 and 3.0e8 < facts["vision_params"] < 3.1e8
    runs = plan["runs"]
    assert runs["stock"]["settings"]["bf16"] is True and runs["ours"]["settings"]["bf16"] is True  # as on a GPU
    assert "recompute_layers=16" in runs["recompute16"]["settings"]["optim_args"]
    samples = {name: run["settings"]["per_device_train_batch_size"] * run["settings"]["gradient_accumulation_steps"]
               for name, run in runs.items()}
    assert set(samples.values()) == {plan["global_batch"]}, samples  # every run takes the same samples per step
    assert not (tmp_path / "work" / "model").exists()  # nothing built, nothing trained
    assert "gpu_run: done" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_assemble_peak_rss_assembles_both_source_formats(tmp_path):
    figures = tmp_path / "figures.json"
    run([sys.executable, str(BENCH / "assemble_peak_rss.py"), "--shape", "tiny", "--keep", str(tmp_path / "work"),
         "--chart", str(tmp_path / "chart.png"), "--json", str(figures)], timeout=600)
    from safetensors.torch import load_file

    result = json.loads(figures.read_text())
    assert set(result["runs"]) == {"safetensors", "bin"}
    weights = {}
    for fmt, measured in result["runs"].items():
        out = Path(measured["out"])
        assert measured["output_bytes"] == sum(path.stat().st_size for path in out.glob("*.safetensors"))
        assert measured["peak_rss_bytes"] > 0
        weights[fmt] = load_file(out / "model.safetensors")
    # The same random models from either source format: the measured assemblies wrote the same weights.
    assert weights["safetensors"].keys() == weights["bin"].keys()
    assert all(weights["safetensors"][name].equal(weights["bin"][name]) for name in weights["bin"])
    assert (tmp_path / "chart.png").read_bytes()[:8] == PNG


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_convert_throughput_converts_every_generated_record(tmp_path):
    records = 300
    figures = tmp_path / "figures.json"
    run([sys.executable, str(BENCH / "convert_throughput.py"), "--sizes", str(records), "--pool-cap", "20",
         "--keep", str(tmp_path / "work"), "--chart", str(tmp_path / "chart.png"), "--json", str(figures)], timeout=300)
    [measured] = json.loads(figures.read_text())["runs"]
    written = (tmp_path / "work" / "datasets" / f"mix_{records}.jsonl").read_text().splitlines()
    assert measured["records"] == records == len(written)  # the timed run converted the whole generated file
    assert f"{records} written" in measured["summary"] and " 0 rejected" in measured["summary"]
    assert measured["peak_rss_mb"] > 0
    assert (tmp_path / "chart.png").read_bytes()[:8] == PNG


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_convert_parquet_throughput_converts_every_generated_row(tmp_path):
    figures = tmp_path / "figures.json"
    run([sys.executable, str(BENCH / "convert_parquet_throughput.py"), "--rows", "300", "--image-kb", "5",
         "--keep", str(tmp_path / "work"), "--json", str(figures)], timeout=300)
    measured = json.loads(figures.read_text())
    written = (tmp_path / "work" / "datasets" / "next.jsonl").read_text().splitlines()
    stored = [path for path in (tmp_path / "work" / "datasets" / "images").rglob("*.jpg")]
    assert measured["rows"] == 300 == len(written)  # the timed run converted every generated row
    assert len(stored) == measured["distinct_images"] < measured["image_rows"]  # duplicates stored once
    assert f"{measured['distinct_images']} distinct inline images" in measured["summary"]
    assert measured["peak_rss_mb"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_generate_throughput_sends_three_requests_per_image_at_each_concurrency(tmp_path):
    images = 4
    figures = tmp_path / "figures.json"
    run([sys.executable, str(BENCH / "generate_throughput.py"), "--images", str(images),
         "--chart", str(tmp_path / "chart.png"), "--json", str(figures)], timeout=300)
    result = json.loads(figures.read_text())
    assert result["requests"] == {"1": 3 * images, "8": 3 * images, "32": 3 * images}  # one per task type and image
    assert (tmp_path / "chart.png").read_bytes()[:8] == PNG


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hook_cost_finds_our_modules_imported_at_start():
    done = run([sys.executable, str(BENCH / "hook_cost.py"), "--runs", "2"], timeout=300)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("hook modules' import time (median of 2): ") and len(lines) == 3
    # Zero milliseconds would mean -X importtime saw no llava_lf module: the script exits non-zero then.
    assert float(lines[0].split(": ")[1].split(" ms")[0]) > 0


STAND_IN_PIP = """#!/usr/bin/env bash
# Stands in for `python -m pip download|wheel ...`: records the request, writes a placeholder wheel.
echo "DS_BUILD_OPS=${DS_BUILD_OPS:-} $*" >> "$LOG"
args=("$@"); dest=""; last="${args[-1]}"
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in --dest|--wheel-dir) dest="${args[i+1]}";; esac
done
case "$last" in
  .) name=llamafactory_llava-0.1.0;;
  *==*) name="$(echo "${last%%==*}" | tr 'A-Z-' 'a-z_')-${last##*==}";;
  *) exit 3;;
esac
touch "$dest/$name-py3-none-any.whl"
"""


def test_fetch_gpu_wheels_asks_for_every_pinned_wheel_for_the_gpu_python(tmp_path):
    pip = tmp_path / "python"
    pip.write_text(STAND_IN_PIP)
    pip.chmod(0o755)
    log, wheels = tmp_path / "pip.log", tmp_path / "wheels"
    done = run(["bash", str(BENCH / "fetch_gpu_wheels.sh"), str(wheels)], timeout=60,
               env={"PYTHON": str(pip), "LOG": str(log), "PY_VERSION": "3.11"})
    requests = log.read_text().splitlines()
    downloads = [line for line in requests if " pip download " in line]
    assert downloads and all("--python-version 3.11 " in line and "--only-binary=:all:" in line
                             and "--platform manylinux2014_x86_64" in line for line in downloads)
    [deepspeed] = [line for line in requests if line.endswith("deepspeed==0.19.8")]
    assert deepspeed.startswith("DS_BUILD_OPS=0 ") and " pip wheel " in deepspeed  # built without its CUDA ops
    assert requests[-1].endswith(" pip wheel --quiet --no-deps --no-build-isolation --wheel-dir " + f"{wheels} .")
    # Every wheel of the manifest (the device run's budget is checked on it) is what the script fetched.
    manifest = {line.split()[0].split("-")[0].lower() for line in (BENCH / "gpu_wheels.txt").read_text().splitlines()
                if line.strip()}
    assert {path.name.split("-")[0] for path in wheels.glob("*.whl")} == manifest
    assert "llamafactory_llava" in done.stdout
