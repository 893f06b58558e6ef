"""What the demo shows a person: an accuracy table, loss curves and an accuracy chart (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from llava_lf.evaluation.benchmarks.shapes import TypeScore


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.4))
    for axis, (title, stage_dir) in zip(list(axes) if len(stages) > 1 else [axes], stages.items()):
        steps, losses = loss_history(stage_dir)
        axis.plot(steps, losses, color="tab:blue")
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def plot_accuracy(before: dict[str, TypeScore], after: dict[str, TypeScore], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(after)
    positions = range(len(names))
    width = 0.27
    figure, axis = plt.subplots(figsize=(7.5, 3.6))
    for offset, (label, values, color) in enumerate([
        ("chance", [after[n].chance for n in names], "tab:gray"),
        ("before training", [before[n].accuracy for n in names], "tab:orange"),
        ("after stage 2", [after[n].accuracy for n in names], "tab:green"),
    ]):
        axis.bar([p + (offset - 1) * width for p in positions], values, width, label=label, color=color)
    axis.set_xticks(list(positions), names)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("held-out accuracy")
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
