"""The package's charts (evaluation results, the demo's curves and accuracies): matplotlib on the Agg
backend, imported only when a chart is drawn, so nothing else pays for it or needs a display."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# (label, value) pairs drawn as markers over one bar, e.g. published numbers beside ours.
Markers = Sequence[tuple[str, float]]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, figure, out: Path) -> Path:
    """Lay out `figure`, write it to `out` as a PNG and close it."""
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def bar_chart(labels: Sequence[str], values: Sequence[float], out: Path, title: str, ylabel: str,
              ymax: float = 100.0, markers: Sequence[Markers] | None = None,
              baseline: Sequence[float | None] | None = None) -> Path:
    """One labelled bar per value; optional markers over each bar (one style per marker label) and an
    optional dashed baseline per bar (e.g. chance)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(values) + 4), 3.8))
    positions = list(range(len(values)))
    axis.bar(positions, values, 0.6, color="tab:blue", label="this run")
    for position, value in zip(positions, values):
        axis.text(position, value + ymax * 0.01, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    shapes, colours = iter("o^sDvP*X"), iter(["tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown",
                                              "tab:pink", "tab:olive"])
    styles: dict[str, tuple[str, str]] = {}
    for position, row_markers in enumerate(markers or ()):
        for label, value in row_markers:
            first = label not in styles
            if first:
                styles[label] = (next(shapes, "o"), next(colours, "black"))
            shape, colour = styles[label]
            axis.scatter([position], [value], marker=shape, color=colour, zorder=3, label=label if first else None)
    for position, level in enumerate(baseline or ()):
        if level is not None:
            axis.hlines(level, position - 0.3, position + 0.3, colors="gray", linestyles="dashed",
                        label="chance" if position == 0 else None)
    many = len(values) > 5
    axis.set_xticks(positions, list(labels), rotation=30 if many else 0, ha="right" if many else "center", fontsize=8)
    axis.set_ylim(0, ymax * 1.08)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    return save(plt, figure, out)


def grouped_bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]], out: Path, title: str,
                      ylabel: str, ymax: float = 100.0, lines: dict[str, float] | None = None,
                      colours: Sequence[str] | None = None, legend_below: bool = True) -> Path:
    """Bars grouped by `groups`, one colour per series (e.g. POPE metrics per split, or the demo's
    chance/before/after); `lines` are labelled horizontal references (e.g. a published figure)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) + 2), 3.8))
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        offsets = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(offsets, values, width, label=name, color=colours[index] if colours else None)
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        axis.axhline(value, color="black", linestyle=style, linewidth=1, label=label)
    axis.set_xticks(list(range(len(groups))), list(groups))
    axis.set_ylim(0, ymax * 1.08)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    if legend_below:
        axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    else:
        axis.legend(fontsize=8, loc="upper left")
    return save(plt, figure, out)


def line_panels(panels: dict[str, tuple[Sequence[float], Sequence[float]]], out: Path, xlabel: str,
                ylabel: str) -> Path:
    """One line plot per panel, side by side (e.g. the training loss of each stage)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4))
    for axis, (title, (xs, ys)) in zip(list(axes) if len(panels) > 1 else [axes], panels.items()):
        axis.plot(xs, ys, color="tab:blue")
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    return save(plt, figure, out)


def bar_panels(panels: dict[str, Sequence[tuple[str, float | None]]], out: Path, title: str,
               notes: dict[str, str] | None = None, columns: int = 4) -> Path:
    """One small bar chart per panel, each on its own scale (e.g. a benchmark table whose columns are percents
    and points); the first bar of each panel is highlighted; a missing value leaves its bar out and the panel's
    note (e.g. "upload") is written in its place."""
    plt = pyplot()
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis, (name, bars) in zip(flat, panels.items()):
        labels = [label for label, _ in bars]
        values = [value or 0.0 for _, value in bars]
        colours = ["tab:blue" if index == 0 else "tab:gray" for index in range(len(bars))]
        axis.bar(range(len(bars)), values, 0.7, color=colours)
        top = max(values) or 1.0
        for index, (_, value) in enumerate(bars):
            if value is not None:
                axis.text(index, value + top * 0.02, f"{value:g}", ha="center", va="bottom", fontsize=6)
        if bars and bars[0][1] is None and notes and name in notes:
            axis.text(0, top * 0.05, notes[name], ha="center", va="bottom", fontsize=7, rotation=90, color="tab:blue")
        axis.set_xticks(range(len(bars)), labels, rotation=40, ha="right", fontsize=6)
        axis.set_ylim(0, top * 1.2)
        axis.set_title(name, fontsize=9)
        axis.tick_params(axis="y", labelsize=6)
        axis.grid(axis="y", alpha=0.3)
    for axis in flat[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=10)
    return save(plt, figure, out)
