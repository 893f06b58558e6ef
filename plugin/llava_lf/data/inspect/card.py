"""Write the card: card.json (every figure), card.md (for people, datasets side by side) and the charts."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import zip_longest
from operator import itemgetter
from pathlib import Path

from llava_lf.data.convert.validate import printable

from .charts import answer_lengths_chart, aspect_ratio_chart, first_words_chart, lengths_chart, types_chart
from .model_card import has_model, model_section, model_tokens_chart

LIST_ROWS = 10  # rows of each "most common" list in card.md


def _int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({100.0 * part / whole:.1f}%)" if whole else "–"


def _stat(summary: dict | None) -> str:
    if not summary:
        return "–"
    return f"{summary['mean']:,.1f} / {summary['p50']:,} / {summary['p90']:,} / {summary['max']:,}"


def _counts(counts: dict[str, int], whole: int, limit: int = 8) -> str:
    items = list(counts.items())
    shown = [f"{key} {100.0 * value / whole:.1f}%" for key, value in items[:limit]] if whole else []
    if len(items) > limit:
        shown.append(f"+{len(items) - limit} more")
    return ", ".join(shown) or "–"


def _text(text: str, width: int = 70) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _side_by_side(cards: list[dict], rows: list[tuple[str, Callable[[dict], str]]]) -> list[str]:
    return _table(["", *[card["label"] for card in cards]], [[name, *map(get, cards)] for name, get in rows])


def _top_item(item: dict | None) -> str:
    return f"{_text(item.get('words', item.get('text', '')) or '(empty)', 48)} ({item['count']:,})" if item else ""


def _top_lists(cards: list[dict], key: str, title: str) -> list[str]:
    columns = [card["diversity"][key][:LIST_ROWS] for card in cards]
    rows = [[str(n), *map(_top_item, row)] for n, row in enumerate(zip_longest(*columns), 1)]
    return [f"**{title}**", "", *(_table(["#", *[card["label"] for card in cards]], rows) if rows else ["none"]), ""]


def _composition(cards: list[dict]) -> list[str]:
    c = itemgetter("composition")
    return ["## Composition", "", *_side_by_side(cards, [
        ("records", lambda d: _int(c(d)["records"])),
        ("with an image", lambda d: _share(c(d)["with_image"], c(d)["records"])),
        ("text-only", lambda d: _share(c(d)["text_only"], c(d)["records"])),
        ("several images", lambda d: _int(c(d)["multi_image"])),
        ("sources", lambda d: _counts(c(d)["sources"], c(d)["records"])),
        ("types", lambda d: _counts(c(d)["types"], c(d)["records"])),
        ("types told by", lambda d: _counts(c(d)["types_told_by"], c(d)["records"])),
        ("turn pairs per record (mean / p50 / p90 / max)", lambda d: _stat(c(d)["pairs_per_record"])),
    ]), "", "![types](types.png)", ""]


def _lengths(cards: list[dict]) -> list[str]:
    kinds = sorted({kind for card in cards for kind in card["lengths"]["answer_words_by_type"]})
    rows = [("words per record (mean / p50 / p90 / max)", lambda d: _stat(d["lengths"]["words_per_record"]))]
    rows += [(f"answer words, {kind}", lambda d, k=kind: _stat(d["lengths"]["answer_words_by_type"].get(k)))
             for kind in kinds]
    tokens = _has_tokens(cards)
    if tokens:
        def t(card):
            return card["lengths"]["tokens"] or {}

        rows.append(("tokens per record (mean / p50 / p90 / max)", lambda d: _stat(t(d).get("per_record"))))
        if any(t(card).get("cutoff_len") for card in cards):
            rows += [
                ("over the cutoff",
                 lambda d: _share(t(d).get("over_cutoff", 0), (t(d).get("per_record") or {}).get("count", 0))),
                ("trimmed (later pairs cut)", lambda d: _int(t(d).get("trimmed"))),
                ("dropped (first pair too long)", lambda d: _int(t(d).get("dropped"))),
                ("turn pairs the cutoff cuts", lambda d: _int(t(d).get("pairs_cut"))),
            ]
    return ["## Lengths", "", *_side_by_side(cards, rows), "", "![words](words.png)", "",
            *(["![tokens](tokens.png)", ""] if tokens else []), "![answer lengths](answer_lengths.png)", ""]


def _diversity(cards: list[dict]) -> list[str]:
    d = itemgetter("diversity")
    return ["## Diversity", "", *_side_by_side(cards, [
        ("questions (distinct)", lambda c: f"{d(c)['questions']:,} ({d(c)['distinct_questions']:,})"),
        ("answers (distinct)", lambda c: f"{d(c)['answers']:,} ({d(c)['distinct_answers']:,})"),
        ("exact duplicate records", lambda c: _int(d(c)["exact_duplicate_records"])),
    ]), "", "![first words](first_words.png)", "",
        *_top_lists(cards, "question_first_word", "First word of questions"),
        *_top_lists(cards, "question_first_two_words", "First two words of questions"),
        *_top_lists(cards, "repeated_questions", "Most repeated questions"),
        *_top_lists(cards, "repeated_answers", "Most repeated answers")]


def _images(cards: list[dict]) -> list[str]:
    i = itemgetter("images")
    lines = ["## Images", "", *_side_by_side(cards, [
        ("image uses (distinct images)", lambda c: f"{i(c)['uses']:,} ({i(c)['distinct']:,})"),
        ("images used by several records", lambda c: _int(i(c)["used_by_several_records"])),
        ("width (mean / p50 / p90 / max)", lambda c: _stat(i(c)["width"])),
        ("height (mean / p50 / p90 / max)", lambda c: _stat(i(c)["height"])),
        ("formats", lambda c: _counts(i(c)["formats"], sum(i(c)["formats"].values()))),
        ("missing or outside the folder (distinct)", lambda c: _int(i(c)["missing"])),
        ("unreadable", lambda c: _int(i(c)["unreadable"])),
        ("near-duplicate groups (images in them)", lambda c: "–" if not c["near_duplicates"] else
         f"{len(c['near_duplicates']['groups']):,} ({c['near_duplicates']['images_in_groups']:,})"),
    ]), ""]
    if _has_ratios(cards):
        lines += ["![aspect ratios](aspect_ratios.png)", ""]
    for card in cards:
        examples = [f"`{path}` (missing)" for path in i(card)["missing_examples"]]
        examples += [f"`{row['image']}`: {row['why']}" for row in i(card)["unreadable_examples"]]
        groups = (card["near_duplicates"] or {}).get("groups", [])[:LIST_ROWS]
        if examples or groups:
            lines += [f"**{card['label']}**", ""] + [f"- {example}" for example in examples]
            lines += [f"- near duplicates (distance <= {group['max_distance']}): "
                      + ", ".join(f"`{name}`" for name in group["images"][:8])
                      + (f" +{len(group['images']) - 8} more" if len(group["images"]) > 8 else "") for group in groups]
            lines.append("")
    return lines


def _problems(cards: list[dict]) -> list[str]:
    p = itemgetter("problems")
    lines = ["## Problems to fix before training", "", *_side_by_side(cards, [
        ("records `llava-lf convert` would reject", lambda c: _share(p(c)["rejected"], c["composition"]["records"])),
        ("reasons", lambda c: ", ".join(f"{k} {v:,}" for k, v in p(c)["reasons"].items()) or "–"),
        ("empty answers", lambda c: _int(p(c)["empty_answers"])),
        ("refusals (answers / records)", lambda c: f"{p(c)['refusal_answers']:,} / {p(c)['refusal_records']:,}"),
        ("non-Latin-script records", lambda c: _int(p(c)["non_latin_records"])),
    ]), ""]
    for card in cards:
        examples = [f"- {row['record']} (line {row['line']}), {row['field']}: {_text(row['message'], 120)}; "
                    f"fix: {row['fix']}" for rows in p(card)["examples"].values() for row in rows]
        examples += [f"- refusal in {row['record']}: \"{_text(row['answer'], 100)}\""
                     for row in p(card)["refusal_examples"][:3]]
        if examples:
            lines += [f"**{card['label']}**", "", *examples, ""]
    return lines


def _has_tokens(cards: list[dict]) -> bool:
    return any(card["lengths"]["tokens"] for card in cards)


def _has_ratios(cards: list[dict]) -> bool:
    return any(card["images"]["aspect_ratio"] for card in cards)


def render_markdown(card: dict) -> str:
    cards = card["datasets"]
    header = ["# Data card", "", "Datasets: " + ", ".join(f"`{d['label']}` ({d['path']})" for d in cards), ""]
    header += [f"- {note}" for note in card["notes"]] + [""]
    body = _composition(cards) + _lengths(cards) + model_section(card) + _diversity(cards) + _images(cards) + _problems(cards)
    return "\n".join(header + body).rstrip() + "\n"


def _printable(value):
    """`value` (card JSON) with each lone surrogate in its strings written as its escape."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def write_card(card: dict, out: Path) -> list[Path]:
    """card.json, card.md and the charts in `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    cards = card["datasets"]
    written = [out / "card.json", out / "card.md"]
    # A lone surrogate a record holds (JSON allows "\ud800") is no UTF-8: it is written as its escape, which
    # in card.json reads back as the same string.
    written[0].write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8",
                          errors="backslashreplace")
    written[1].write_text(render_markdown(card), encoding="utf-8", errors="backslashreplace")
    cards = _printable(cards)  # the chart fonts take no lone surrogate either
    words = [d["lengths"]["words_per_record_counts"] for d in cards]
    written += [types_chart(cards, out / "types.png"), answer_lengths_chart(cards, out / "answer_lengths.png"),
                lengths_chart(cards, words, out / "words.png", "words")]
    if _has_tokens(cards):
        tokens = [(d["lengths"]["tokens"] or {}).get("per_record_counts", {}) for d in cards]
        written.append(lengths_chart(cards, tokens, out / "tokens.png", "tokens", card["options"].get("cutoff_len")))
    written.append(first_words_chart(cards, out / "first_words.png"))
    if has_model(cards):
        written.append(model_tokens_chart(card, out / "model_tokens.png"))
    if _has_ratios(cards):
        written.append(aspect_ratio_chart(cards, out / "aspect_ratios.png"))
    return written
