"""What a results folder holds: `{name}.json` (everything), `{name}.md` (a table beside the published
numbers), `{name}.png` (a chart), and any files a benchmark's server or official tool reads (uploads)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llava_lf.common import charts

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
    files: tuple[tuple[str, Callable[[Path], None]], ...] = ()  # (name in OUT_DIR, writer): uploads, converted files


@dataclass(frozen=True)
class WrittenReport:
    json: Path
    markdown: Path
    chart: Path
    files: tuple[Path, ...] = ()


def listing(ids: Sequence[str], limit: int = 20) -> str:
    """The first `limit` ids, and how many more (all of them are in the JSON)."""
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more; all in the JSON)" if len(ids) > limit else "")


def cell(value: float | None, digits: int = 1) -> str:
    """A figure as a table or summary shows it; a dash where there is none (an empty group, a server's score)."""
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
        body.append([row.label, str(row.questions), cell(row.value, digits)]
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
    files = []
    for name, write in report.files:
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        files.append(path)
    return WrittenReport(json_path, md_path, png_path, tuple(files))


def bar_chart(rows: Sequence[Row], published: dict[str, tuple[Published, ...]], out: Path, title: str,
              ylabel: str, ymax: float = 100.0, baseline: dict[str, float] | None = None) -> Path:
    """One bar per row; published numbers as markers over the bar they belong to; an optional dashed
    baseline (e.g. chance) per row."""
    return charts.bar_chart([row.label for row in rows], [row.value or 0.0 for row in rows], out, title, ylabel,
                            ymax, markers=[[(p.model, p.value) for p in published.get(row.key, ())] for row in rows],
                            baseline=[(baseline or {}).get(row.key) for row in rows])


grouped_bar_chart = charts.grouped_bar_chart
