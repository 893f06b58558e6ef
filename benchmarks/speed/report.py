"""The benchmark's results: one JSON document, a table on stdout, a PNG chart."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .metrics import MFU_CONVENTION, compare_losses, throughput
from .model import ModelFacts
from .probe import RunRecord

LOSS_STEPS = 20
# The speed acceptance, measured side by side in one run on one H100/H200.
TARGET_RATIO, TARGET_MFU, MEMORY_LIMIT_GIB = 2.2, 0.45, 80.0


def run_summary(record: RunRecord, facts: ModelFacts, warmup: int, peak: float | None) -> dict[str, Any]:
    losses = [record.losses[step] for step in sorted(record.losses)][:LOSS_STEPS]
    return {
        **asdict(throughput(record.steps, warmup, facts, peak)),
        "peak_gpu_allocated_gib": record.peak_gpu_allocated_gib, "peak_gpu_reserved_gib": record.peak_gpu_reserved_gib,
        "peak_host_rss_gib": record.peak_host_rss_gib, "loss_first_20": losses,
        "step_seconds": [round(step.seconds, 4) for step in record.steps], "setup": record.setup,
    }


def compare(runs: dict[str, dict[str, Any]], records: dict[str, RunRecord], reference: str,
            rtol: float) -> dict[str, dict[str, Any]]:
    """Each run against the reference: tokens/s ratio and loss curve over the first 20 steps."""
    out = {}
    for name, summary in runs.items():
        if name == reference or "error" in summary or "error" in runs.get(reference, {"error": 1}):
            continue
        base = runs[reference]
        loss = compare_losses(records[reference].losses, records[name].losses, rtol, LOSS_STEPS,
                              (base["samples_per_step"], summary["samples_per_step"]))
        out[name] = {"tokens_per_s_ratio": summary["tokens_per_s"] / base["tokens_per_s"], "loss": asdict(loss)}
    return out


def acceptance(runs: dict[str, dict[str, Any]], comparisons: dict[str, dict[str, Any]], on_gpu: bool,
               candidate: str = "ours") -> dict[str, bool | None]:
    """The speed acceptance for one run; speed and memory only mean something on a GPU (None on CPU)."""
    summary, versus = runs.get(candidate, {}), comparisons.get(candidate)
    if "error" in summary or versus is None:
        return {"ratio_ge_2_2": False, "mfu_ge_45": False, "memory_le_80_gib": False, "loss_within_tolerance": False}
    timed = on_gpu and summary.get("mfu") is not None
    memory = summary.get("peak_gpu_reserved_gib")
    return {
        "ratio_ge_2_2": versus["tokens_per_s_ratio"] >= TARGET_RATIO if on_gpu else None,
        "mfu_ge_45": summary["mfu"] >= TARGET_MFU if timed else None,
        "memory_le_80_gib": memory <= MEMORY_LIMIT_GIB if on_gpu and memory is not None else None,
        "loss_within_tolerance": versus["loss"]["within_tolerance"],
    }


def document(settings: dict[str, Any], facts: ModelFacts, device: str, peak: float | None,
             runs: dict[str, dict[str, Any]], comparisons: dict[str, dict[str, Any]],
             verdict: dict[str, bool | None]) -> dict[str, Any]:
    return {"benchmark": "lora_speed", "device": device, "peak_tflops": peak, "mfu_convention": MFU_CONVENTION,
            "settings": settings, "model": asdict(facts), "runs": runs, "comparison": comparisons,
            "acceptance": verdict}


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table(result: dict[str, Any]) -> str:
    header = ("| run | tokens/s | x stock | MFU | step s | samples/step | padding | peak GiB (alloc/reserved) | "
              "loss max / mean rel diff |")
    lines = [f"device: {result['device']}   MFU convention: {result['mfu_convention']}", header,
             "|---|---|---|---|---|---|---|---|---|"]
    for name, run in result["runs"].items():
        if "error" in run:
            lines.append(f"| {name} | failed: {run['error'][:80]} |")
            continue
        versus = result["comparison"].get(name, {})
        loss = versus.get("loss", {})
        memory = f"{_fmt(run['peak_gpu_allocated_gib'], '.1f')} / {_fmt(run['peak_gpu_reserved_gib'], '.1f')}"
        mfu = "-" if run["mfu"] is None else f"{100 * run['mfu']:.1f}%"
        lines.append(f"| {name} | {run['tokens_per_s']:,.0f} | {_fmt(versus.get('tokens_per_s_ratio'), '.2f')} | "
                     f"{mfu} | {run['step_s_median']:.3f} | {run['samples_per_step']:.1f} | "
                     f"{100 * run['padding_fraction']:.1f}% | {memory} | "
                     f"{_fmt(loss.get('max_rel_diff'), '.4f')} / {_fmt(loss.get('mean_rel_diff'), '.4f')} |")
    verdict = ", ".join(f"{key}={value}" for key, value in result["acceptance"].items())
    lines.append(f"acceptance (ours): {verdict}")
    return "\n".join(lines)


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """Loss curves with the tolerance band around the stock curve, and tokens/s bars; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = {name: run for name, run in result["runs"].items() if "error" not in run}
    if not runs:
        return False
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    rtol = result["settings"]["loss_rtol"]
    for name, run in runs.items():
        steps = range(1, len(run["loss_first_20"]) + 1)
        curves.plot(steps, run["loss_first_20"], marker="o", markersize=3, label=name)
        if name == "stock":
            low = [loss * (1 - rtol) for loss in run["loss_first_20"]]
            high = [loss * (1 + rtol) for loss in run["loss_first_20"]]
            curves.fill_between(steps, low, high, alpha=0.15, label=f"stock ± {100 * rtol:g}%")
    curves.set(xlabel="optimizer step", ylabel="training loss", title="Loss, first 20 steps (same data, seed)")
    curves.legend()
    names = list(runs)
    speeds = [runs[name]["tokens_per_s"] for name in names]
    drawn = bars.bar(names, speeds, color=["tab:gray" if name == "stock" else "tab:blue" for name in names])
    for bar, name in zip(drawn, names):
        run = runs[name]
        mfu = "" if run["mfu"] is None else f"{100 * run['mfu']:.1f}% MFU\n"
        memory = run["peak_gpu_reserved_gib"]
        label = mfu + ("" if memory is None else f"{memory:.0f} GiB")
        bars.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                      fontsize=8)
    device = result["device"]
    title = f"Throughput on {device}" + (" (a correctness run, not a speed figure)" if device == "cpu" else "")
    bars.set(ylabel="tokens/s (real tokens, after warm-up)", title=title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
