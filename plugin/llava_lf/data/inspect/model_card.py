"""The card's model view in card.md (datasets side by side, then each dataset by `data_source`) and its chart."""

from __future__ import annotations

from pathlib import Path

from llava_lf.common.charts import pyplot, save

from .charts import cumulative_step
from .model_tokens import HOST_CUTOFF_LEN


def has_model(cards: list[dict]) -> bool:
    return any(card.get("model") for card in cards)


def _stat(summary: dict | None) -> str:
    if not summary:
        return "–"
    return f"{summary['mean']:,.1f} / {summary['p50']:,} / {summary['p99']:,} / {summary['max']:,}"


def _over(figures: dict, cutoff: int) -> str:
    row = figures["over"].get(str(cutoff))
    return f"{row['records']:,} ({100.0 * row['share']:.1f}%)" if row and figures["samples"] else "–"


def _cutoff_name(cutoff: int) -> str:
    return f"over cutoff_len {cutoff:,}" + (" (the host's default)" if cutoff == HOST_CUTOFF_LEN else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def model_section(card: dict) -> list[str]:
    """`## Tokens under MODEL`: what each dataset's records cost that model, and the cutoff_len that keeps them."""
    cards = [data for data in card["datasets"] if data.get("model")]
    if not cards:
        return []
    model = card["options"]["model"]
    cutoffs = cards[0]["model"]["cutoffs"]
    rows = [
        ("records counted (kept by the converter)", lambda m: f"{m['samples']:,}"),
        ("left out: an image of unknown size", lambda m: f"{m['unknown']:,}"),
        ("image tokens per image (mean / p50 / p99 / max)", lambda m: _stat(m["image_tokens_per_image"])),
        ("image tokens per record with an image", lambda m: _stat(m["image_tokens_per_sample"])),
        ("text tokens per record", lambda m: _stat(m["text_tokens_per_sample"])),
        ("tokens per record, text + images", lambda m: _stat(m["tokens"])),
        ("**smallest cutoff_len keeping 99% whole**", lambda m: f"{m['keep_99']:,}" if m["keep_99"] else "–"),
        ("**smallest cutoff_len keeping 100% whole**", lambda m: f"{m['keep_100']:,}" if m["keep_100"] else "–"),
        *[(_cutoff_name(cutoff), lambda m, c=cutoff: _over(m, c)) for cutoff in cutoffs],
    ]
    lines = [f"## Tokens under {model['name']} ({model['family']})", "",
             f"Each record the converter keeps, as this model trains on it: {model['note']}. A record is whole under "
             "a cutoff_len at least its tokens; one over it loses its later turns (or is dropped when its first pair "
             "alone is longer).", "",
             *_table(["", *[data["label"] for data in cards]],
                     [[name, *(get(data["model"]) for data in cards)] for name, get in rows]),
             "", "![model tokens](model_tokens.png)", ""]
    for data in cards:
        groups = data["model"]["by_data_source"]
        if not groups:
            continue
        header = ["data_source", "records", "keeps 99%", "keeps 100%", *[f"over {c:,}" for c in cutoffs]]
        lines += [f"**{data['label']} by data_source**", "", *_table(header, [
            [source, f"{g['samples']:,}", f"{g['keep_99']:,}" if g["keep_99"] else "–",
             f"{g['keep_100']:,}" if g["keep_100"] else "–", *[_over(g, c) for c in cutoffs]]
            for source, g in groups.items()]), ""]
    return lines


def model_tokens_chart(card: dict, out: Path) -> Path:
    """Share of records at or below each length (text + image tokens), one line per dataset, the candidates dashed."""
    cards = [data for data in card["datasets"] if data.get("model")]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for data in cards:
        cumulative_step(axis, {int(value): n for value, n in data["model"]["per_sample_counts"].items()}, data["label"])
    for cutoff in cards[0]["model"]["cutoffs"] if cards else []:
        axis.axvline(cutoff, color="grey", linestyle="--", linewidth=0.8)
        axis.text(cutoff, 2, f" {cutoff}", fontsize=7, color="grey", rotation=90, va="bottom")
    axis.set_xlabel("tokens per record (text + images)")
    axis.set_ylabel("% of records at or below")
    axis.set_ylim(0, 101)
    axis.set_title(f"tokens per record under {card['options']['model']['name']} (cumulative)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center right")
    return save(plt, figure, out)
