"""What the demo shows a person: an accuracy table, loss curves and an accuracy chart (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from llava_lf.common import charts
from llava_lf.evaluation.tasks.demo import TypeScore


def accuracy_table(before: dict[str, TypeScore], after: dict[str, TypeScore]) -> str:
    header = f"{'question type':<14} {'n':>5} {'chance':>8} {'before':>8} {'after':>8}"
    lines = [header, "-" * len(header)]
    for qtype, final in after.items():
        lines.append(f"{qtype:<14} {final.questions:>5} {final.chance:>8.3f} "
                     f"{before[qtype].accuracy:>8.3f} {final.accuracy:>8.3f}")
    return "\n".join(lines)


def loss_history(stage_dir: Path) -> tuple[list[float], list[float]]:
    """(steps, losses) logged by the host's trainer in `trainer_state.json`."""
    state = json.loads((stage_dir / "trainer_state.json").read_text())
    points = [(entry["step"], entry["loss"]) for entry in state["log_history"] if "loss" in entry]
    return [step for step, _ in points], [loss for _, loss in points]


def plot_losses(stages: dict[str, Path], out: Path) -> Path:
    return charts.line_panels({title: loss_history(stage_dir) for title, stage_dir in stages.items()}, out,
                              "step", "training loss")


def plot_accuracy(before: dict[str, TypeScore], after: dict[str, TypeScore], out: Path) -> Path:
    names = list(after)
    series = {"chance": [after[n].chance for n in names], "before training": [before[n].accuracy for n in names],
              "after stage 2": [after[n].accuracy for n in names]}
    return charts.grouped_bar_chart(names, series, out, "", "held-out accuracy", ymax=1.0,
                                    colours=["tab:gray", "tab:orange", "tab:green"], legend_below=False)


def comparison_table(llava15: dict[str, dict[str, TypeScore]], llava_next: dict[str, dict[str, TypeScore]],
                     groups: tuple[str, ...]) -> str:
    """One row per question type, and per group of questions (all, small, large) its count, 1.5's and NeXT's."""
    shown = [group for group in groups if group in llava_next]
    header = f"{'question type':<14} {'chance':>6} " + " ".join(
        f"| {group + ' n':>9} {'1.5':>6} {'NeXT':>6}" for group in shown)
    lines = [header, "-" * len(header)]
    for qtype, final in llava_next[shown[0]].items():
        cells = []
        for group in shown:
            next_score, old = llava_next[group].get(qtype), llava15[group].get(qtype)
            cells.append(f"| {next_score.questions:>9} {old.accuracy:>6.3f} {next_score.accuracy:>6.3f}"
                         if next_score and old else f"| {'-':>9} {'-':>6} {'-':>6}")
        lines.append(f"{qtype:<14} {final.chance:>6.3f} " + " ".join(cells))
    return "\n".join(lines)


def comparison_chart(llava15: dict[str, dict[str, TypeScore]], llava_next: dict[str, dict[str, TypeScore]],
                     out: Path) -> Path:
    """Overall accuracy of each group of questions, both models side by side."""
    names = [group for group in llava_next if group in llava15]
    series = {"LLaVA-1.5": [llava15[g]["all"].accuracy for g in names],
              "LLaVA-NeXT": [llava_next[g]["all"].accuracy for g in names]}
    return charts.grouped_bar_chart([f"{g} questions" for g in names], series, out, "", "held-out accuracy",
                                    ymax=1.0, colours=["tab:orange", "tab:green"], legend_below=False)
