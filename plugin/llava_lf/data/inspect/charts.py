"""The card's PNG charts, drawn from card.json's figures (datasets side by side in each)."""

from __future__ import annotations

import warnings
from pathlib import Path

from llava_lf.common.charts import grouped_bar_chart, pyplot, save

from .images import RATIO_LABELS
from .kinds import TYPES


def _shares(counts: dict[str, int], keys: list[str]) -> list[float]:
    total = sum(counts.values())
    return [100.0 * counts.get(key, 0) / total if total else 0.0 for key in keys]


def _ymax(series: dict[str, list[float]]) -> float:
    return max([value for values in series.values() for value in values] + [1.0])


def types_chart(cards: list[dict], out: Path) -> Path:
    keys = [key for key in (*TYPES, "unknown") if any(card["composition"]["types"].get(key) for card in cards)]
    series = {card["label"]: _shares(card["composition"]["types"], keys) for card in cards}
    return grouped_bar_chart(keys, series, out, "LLaVA instruction types", "% of records", ymax=100.0)


def answer_lengths_chart(cards: list[dict], out: Path) -> Path:
    keys = sorted({kind for card in cards for kind in card["lengths"]["answer_words_by_type"]})
    series = {card["label"]: [(card["lengths"]["answer_words_by_type"].get(kind) or {}).get("mean", 0.0)
                              for kind in keys] for card in cards}
    return grouped_bar_chart(keys, series, out, "answer length by type (mean words per answer)", "words",
                             ymax=_ymax(series))


def aspect_ratio_chart(cards: list[dict], out: Path) -> Path:
    series = {card["label"]: _shares(card["images"]["aspect_ratio"], list(RATIO_LABELS)) for card in cards}
    return grouped_bar_chart(list(RATIO_LABELS), series, out, "image aspect ratio (width / height)", "% of images",
                             ymax=_ymax(series))


def cumulative_step(axis, dist: dict[int, int], label: str) -> None:
    """One dataset's line: the share of records at or below each length (nothing for an empty distribution)."""
    total = sum(dist.values())
    if not total:
        return
    xs, ys, running = [min(dist)], [0.0], 0
    for value in sorted(dist):
        running += dist[value]
        xs.append(value)
        ys.append(100.0 * running / total)
    axis.step(xs, ys, where="post", label=label)


def lengths_chart(cards: list[dict], counts: list[dict[str, int]], out: Path, unit: str,
                  cutoff: int | None = None) -> Path:
    """Share of records by length (cumulative), one line per dataset, from card.json's counts (length -> records);
    the cutoff as a vertical line."""
    counts = [{int(length): n for length, n in dist.items()} for dist in counts]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    longest = max((max(dist) for dist in counts if dist), default=1)
    for card, dist in zip(cards, counts):
        cumulative_step(axis, dist, card["label"])
    if cutoff is not None:
        axis.axvline(cutoff, color="black", linestyle="--", linewidth=1, label=f"--cutoff-len {cutoff}")
    if longest > 200:  # LLaVA-Instruct answers run to hundreds of words, VQA answers to one or two
        axis.set_xscale("log")
    axis.set_xlabel(f"{unit} per record")
    axis.set_ylabel("% of records at or below")
    axis.set_ylim(0, 101)
    axis.set_title(f"{unit} per record (cumulative)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return save(plt, figure, out)


def first_words_chart(cards: list[dict], out: Path, top: int = 10) -> Path:
    """The most common first words of questions, one panel per dataset."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(cards), figsize=(3.6 * len(cards) + 0.6, 3.8), squeeze=False)
    for axis, card in zip(axes[0], cards):
        rows = card["diversity"]["question_first_word"][:top][::-1]
        total = card["diversity"]["questions"] or 1
        axis.barh([row["words"] or "(none)" for row in rows], [100.0 * row["count"] / total for row in rows],
                  color="tab:blue")
        axis.set_title(card["label"], fontsize=9)
        axis.set_xlabel("% of questions")
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle("first word of questions", fontsize=10)
    with warnings.catch_warnings():  # a word in a script the default font lacks is drawn as boxes, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        return save(plt, figure, out)
