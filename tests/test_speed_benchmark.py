"""The LoRA speed benchmark (benchmarks/lora_speed.py): its tiny CPU run end to end, and its arithmetic.

The end-to-end test runs the real benchmark command: it builds the tiny model, writes and converts the
data, and trains stock LLaMA-Factory and our recipe YAML with the real host in subprocesses. It checks
correctness only (both paths train, their loss curves agree, the guard catches a run that trains less);
speed is measured on a GPU (docs/performance.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BIN, REPO

import yaml

pytestmark = pytest.mark.host

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

from speed.configs import PlanError, RunPlan, _cli_value, align_global_batch, parse_variant
from speed.metrics import compare_losses, throughput
from speed.model import SHAPES, facts_without_weights
from speed.probe import StepRecord, batch_counts, sequence_lengths

RUN_FIELDS = {"measured_steps", "seconds", "tokens", "tokens_per_s", "step_s_median", "tokens_per_step",
              "samples_per_step", "padding_fraction", "mfu", "peak_gpu_allocated_gib", "peak_gpu_reserved_gib",
              "peak_host_rss_gib", "loss_first_20", "step_seconds", "setup"}


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora_speed")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # One more run, "qv": our YAML with LoRA on q_proj/v_proj only, as a broken speed option that trains
    # less would; the loss guard must reject it.
    command = [sys.executable, str(BENCH / "lora_speed.py"), "--tiny", "--out", str(out),
               "--variant", "qv", "lora_target=q_proj,v_proj"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads((out / "lora_speed.json").read_text()), out, result.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_benchmark_trains_both_paths_to_the_same_loss_curve(tiny_result):
    result, out, stdout = tiny_result
    assert set(result["runs"]) == {"stock", "ours", "qv"}
    for name in ("stock", "ours"):
        run = result["runs"][name]
        assert RUN_FIELDS <= set(run), f"{name} lacks {RUN_FIELDS - set(run)}"
        assert len(run["loss_first_20"]) == result["settings"]["steps"] == len(run["step_seconds"])
        assert run["loss_first_20"][-1] < 0.9 * run["loss_first_20"][0], f"{name} did not train"
        assert run["samples_per_step"] == result["settings"]["global_batch"]
        assert run["tokens_per_s"] > 0 and run["mfu"] is None  # no MFU without a known peak (CPU)
    ours = result["comparison"]["ours"]
    assert ours["loss"]["within_tolerance"], ours
    assert ours["loss"]["steps"] == result["settings"]["steps"]
    assert not result["comparison"]["qv"]["loss"]["within_tolerance"]
    assert result["acceptance"]["loss_within_tolerance"] is True
    assert result["acceptance"]["ratio_ge_2_2"] is None  # speed is not judged on a CPU
    assert "acceptance (ours)" in stdout and "| ours |" in stdout
    assert (out / "lora_speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_two_paths_use_their_own_templates_and_options(tiny_result):
    result, out, _ = tiny_result
    stock_log, ours_log = (out / "logs" / "stock.log").read_text(), (out / "logs" / "ours.log").read_text()
    # The host prints one tokenised sample: Vicuna v1 with BOS for llava_v1, the host's llava without it.
    assert "<s>A chat between a curious user" in ours_log
    assert "<s>A chat between" not in stock_log and "A chat between a curious user" in stock_log
    ours = result["runs"]["ours"]
    assert result["settings"]["ours_yaml"].endswith("llava1_5_lora_sft.yaml")
    shipped = yaml.safe_load(Path(result["settings"]["ours_yaml"]).read_text())
    projector_lr = float(dict(item.split("=") for item in shipped["optim_args"].split(","))["mm_projector_lr"])
    groups = ours["plugin_report"]["param_groups"]  # our callback gave the projector its own rate
    projector = [group for group in groups if "projector" in group["modules"]]
    assert projector and all(group["initial_lr"] == pytest.approx(projector_lr) for group in projector), groups
    assert result["runs"]["stock"]["setup"]["gradient_checkpointing"] is True
    assert ours["setup"]["trainable_params"] > result["runs"]["stock"]["setup"]["trainable_params"]  # + projector


def test_mfu_convention_reproduces_the_anchor_figures():
    """PERFORMANCE.md: stock 7B at batch 16 x ~920 tokens, 2.015 s/step = 7,306 tokens/s = 20.6% MFU."""
    facts = facts_without_weights(SHAPES["7b"])
    assert 6.7e9 < facts.llm_params < 6.8e9 and 3.0e8 < facts.vision_params < 3.1e8
    for seconds, tokens_per_s, mfu in ((2.015, 7306, 0.206), (1.411, 10434, 0.294)):
        steps = [StepRecord(step=i, seconds=seconds, tokens=16 * 920, padded_tokens=16 * 920,
                            image_tokens=16 * 576, sequences=16, sum_sq_seq_len=16 * 920.0**2, images=16)
                 for i in range(1, 9)]
        measured = throughput(steps, warmup=3, facts=facts, peak=989.0)
        assert measured.measured_steps == 5
        assert measured.tokens_per_s == pytest.approx(tokens_per_s, rel=2e-3)
        assert measured.mfu == pytest.approx(mfu, abs=1e-3)


def test_sequence_lengths_in_every_batch_form():
    from llamafactory.data.collator import prepare_4d_attention_mask

    ids = torch.tensor([[5, 6, 7, 8, 9, 0], [5, 6, 7, 0, 0, 0]])
    padded = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    assert sequence_lengths(ids, padded, None, pad_id=0).tolist() == [5, 3]
    packed = torch.tensor([[1, 1, 2, 2, 2, 0], [1, 2, 2, 3, 3, 3]])  # the host's neat_packing numbering
    assert sequence_lengths(ids, packed, None, pad_id=0).tolist() == [2, 3, 1, 2, 3]
    block = prepare_4d_attention_mask(packed, torch.float32)  # the host's own 4-D block-diagonal mask
    assert sequence_lengths(ids, block, None, pad_id=0).tolist() == [2, 3, 1, 2, 3]
    positions = torch.tensor([[0, 1, 0, 1, 2, 3]])  # varlen packing: positions restart per sequence
    assert sequence_lengths(torch.ones(1, 6, dtype=torch.long), None, positions, pad_id=0).tolist() == [2, 4]
    assert sequence_lengths(ids, None, None, pad_id=0).tolist() == [5, 3]
    # tokens, image tokens (id 7), sequences, sum of squared lengths of one packed model call
    assert batch_counts({"input_ids": ids, "attention_mask": packed}, 0, 7).tolist() == [11, 2, 5, 27]


def test_loss_comparison_rejects_a_step_outlier_a_drift_and_different_data():
    reference = {step: 6.0 - 0.1 * step for step in range(1, 21)}
    assert compare_losses(reference, dict(reference), rtol=0.02).within_tolerance
    spike = {**reference, 7: reference[7] * 1.03}
    assert compare_losses(reference, spike, rtol=0.02).worst_step == 7
    assert not compare_losses(reference, spike, rtol=0.02).within_tolerance
    drift = {step: loss * 1.012 for step, loss in reference.items()}  # every step inside 2%, the mean not in 1%
    assert not compare_losses(reference, drift, rtol=0.02).within_tolerance
    other_data = compare_losses(reference, dict(reference), rtol=0.02, samples=(16.0, 32.0))
    assert not other_data.comparable and not other_data.within_tolerance and "samples per step" in other_data.note


def test_global_batch_alignment_and_variant_errors(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("per_device_train_batch_size: 32\n")
    plans = [RunPlan("stock", "stock", config, {"per_device_train_batch_size": 16}), RunPlan("ours", "ours", config)]
    assert align_global_batch(plans, None) == 32
    assert [plan.overrides["gradient_accumulation_steps"] for plan in plans] == [2, 1]
    with pytest.raises(PlanError, match="not a multiple of the micro batch of ours"):
        align_global_batch(plans, 48)
    assert parse_variant(["pack", "base=stock", "neat_packing=true"]) == ("pack", "stock", {"neat_packing": True})
    with pytest.raises(PlanError, match="first word is the run's name"):
        parse_variant(["neat_packing=true"])
    with pytest.raises(PlanError, match="not key=value"):
        parse_variant(["pack", "neat_packing"])


def test_cli_values_reach_the_host_parser_unchanged():
    from llamafactory.hparams.parser import read_args

    values = {"save_strategy": "no", "report_to": ["llava_lf"], "tokenized_path": None, "bf16": False,
              "learning_rate": 2.0e-4, "lora_target": "q_proj,v_proj", "output_dir": "/tmp/a b",
              "optim_args": "mm_projector_lr=2.0e-5,group_by_modality=true,recompute_layers=16"}
    argv = sys.argv
    try:
        sys.argv = ["llamafactory-cli", str(REPO / "yaml" / "demo" / "export.yaml")] + [
            f"{key}={_cli_value(value)}" for key, value in values.items()]
        parsed = read_args()
    finally:
        sys.argv = argv
    assert {key: parsed[key] for key in values} == values


DEVICE_LIMIT = 64 * 2**20  # bytes a device run receives: the working tree plus what it carries


def _pinned(script: str) -> list[tuple[str, str]]:
    """(distribution, version) of every `name==version` the fetch script downloads or builds."""
    return [(name.lower().replace("-", "_"), version)
            for name, version in re.findall(r"([A-Za-z0-9_.-]+)==([0-9][A-Za-z0-9_.]*)", script)]


def test_gpu_wheels_fit_what_a_device_run_receives():
    """benchmarks/gpu_wheels.txt (file, bytes, as the fetch script wrote them) covers every pin of the fetch
    script and, with the repository's tracked files, fits the device's 64 MiB; nothing is downloaded."""
    manifest = dict(line.split() for line in (BENCH / "gpu_wheels.txt").read_text().splitlines() if line.strip())
    sizes = {name: int(size) for name, size in manifest.items()}
    pins = _pinned((BENCH / "fetch_gpu_wheels.sh").read_text())
    assert ("deepspeed", "0.19.8") in pins and ("transformers", "5.6.0") in pins
    for name, version in pins:
        assert any(wheel.lower().startswith(f"{name}-{version}-") for wheel in sizes), f"{name}=={version} not listed"
    listed = {wheel.split("-")[0].lower() for wheel in sizes}
    assert listed == {name for name, _ in pins} | {"llamafactory_llava"}  # nothing stale, the project included
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    tree = sum((REPO / path).stat().st_size for path in tracked.decode().split("\0") if path and (REPO / path).is_file())
    total = sum(sizes.values()) + tree
    assert total < DEVICE_LIMIT, f"{total / 2**20:.1f} MiB: wheels {sum(sizes.values()) / 2**20:.1f} + tree {tree / 2**20:.1f}"


def test_packing_measurement_orders_the_layouts(tmp_path, capsys):
    """benchmarks/packing_padding.py on a small draw, through its command line: packing (the host's own knapsack)
    pads least and carries the most real tokens in the same peak slots; modality grouping pads less than a
    shuffled order."""
    from packing_padding import main

    assert main(["--samples", "4000", "--json", str(tmp_path / "packing.json")]) == 0
    result = json.loads((tmp_path / "packing.json").read_text())
    assert result["samples"] == 4000 and "4000 samples" in capsys.readouterr().out
    share = {layout["name"]: layout["padding_share"] for layout in result["layouts"]}
    tokens = {layout["name"]: layout["real_tokens_per_step_mean"] for layout in result["layouts"]}
    assert share["packed"] < 0.15 < share["grouped"] < share["random"]
    assert tokens["packed"] > 2 * tokens["random"]
    assert {layout["peak_slots_per_step"] for layout in result["layouts"]} == {16 * 2048}
