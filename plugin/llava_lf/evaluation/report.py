"""What a results folder holds: `{name}.json` (everything), `{name}.md` (a table beside the published
numbers) and `{name}.png` (a chart)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .published import Published


@dataclass(frozen=True)
class Row:
    key: str  # the key published numbers are filed under
    label: str
    questions: int
    value: float | None  # ours, in percent


@dataclass(frozen=True)
class Report:
    name: str  # file stem: scienceqa, llava_bench_wild, pope, demo
    title: str
    payload: dict  # the JSON results
    markdown: str
    draw_chart: Callable[[Path], Path]
    summary: str  # what the CLI prints


@dataclass(frozen=True)
class WrittenReport:
    json: Path
    markdown: Path
    chart: Path


def _cell(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_table(rows: Sequence[Row], published: dict[str, tuple[Published, ...]], ours: str = "this run",
                     digits: int = 1) -> str:
    """Our rows with one column per published model (its numbers as printed in the paper); a dash where
    that model reported nothing."""
    models: list[str] = []
    for numbers in published.values():
        models += [p.model for p in numbers if p.model not in models]
    body = []
    for row in rows:
        reported = {p.model: p.value for p in published.get(row.key, ())}
        body.append([row.label, str(row.questions), _cell(row.value, digits)]
                    + ["–" if reported.get(m) is None else f"{reported[m]:g}" for m in models])
    return markdown_table(["", "n", ours] + models, body)


def notes(published: dict[str, tuple[Published, ...]]) -> str:
    lines = [f"- {p.model}: {p.note}" for numbers in published.values() for p in numbers if p.note]
    return "\n".join(dict.fromkeys(lines))  # first-seen order, no repeats


def write_report(report: Report, out_dir: Path) -> WrittenReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"{report.name}{suffix}" for suffix in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(report.payload, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(f"# {report.title}\n\n{report.markdown}\n", encoding="utf-8")
    report.draw_chart(png_path)
    return WrittenReport(json_path, md_path, png_path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(rows: Sequence[Row], published: dict[str, tuple[Published, ...]], out: Path, title: str,
              ylabel: str, ymax: float = 100.0, baseline: dict[str, float] | None = None) -> Path:
    """One bar per row; published numbers as markers over the bar they belong to; an optional dashed
    baseline (e.g. chance) per row."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 4), 3.8))
    positions = list(range(len(rows)))
    values = [row.value or 0.0 for row in rows]
    axis.bar(positions, values, 0.6, color="tab:blue", label="this run")
    for position, value in zip(positions, values):
        axis.text(position, value + ymax * 0.01, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    markers = iter("o^sDvP*X")
    colours = iter(["tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"])
    styles: dict[str, tuple[str, str]] = {}
    for position, row in enumerate(rows):
        for number in published.get(row.key, ()):
            if number.model not in styles:
                styles[number.model] = (next(markers, "o"), next(colours, "black"))
                label = number.model
            else:
                label = None
            marker, colour = styles[number.model]
            axis.scatter([position], [number.value], marker=marker, color=colour, zorder=3, label=label)
        if baseline and row.key in baseline:
            axis.hlines(baseline[row.key], position - 0.3, position + 0.3, colors="gray", linestyles="dashed",
                        label="chance" if position == 0 else None)
    axis.set_xticks(positions, [row.label for row in rows], rotation=30 if len(rows) > 5 else 0, ha="right"
                    if len(rows) > 5 else "center", fontsize=8)
    axis.set_ylim(0, ymax * 1.08)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def grouped_bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]], out: Path, title: str,
                      ylabel: str, ymax: float = 100.0, lines: dict[str, float] | None = None) -> Path:
    """Bars grouped by `groups`, one colour per series (e.g. POPE metrics per split); `lines` are
    labelled horizontal references (e.g. a published figure)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) + 2), 3.8))
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        offsets = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(offsets, values, width, label=name)
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        axis.axhline(value, color="black", linestyle=style, linewidth=1, label=label)
    axis.set_xticks(list(range(len(groups))), list(groups))
    axis.set_ylim(0, ymax * 1.08)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
