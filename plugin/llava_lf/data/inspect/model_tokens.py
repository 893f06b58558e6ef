"""The card's model view (`--model`): each kept record's tokens as that model trains on it (text, then each image's
count from `model_view`), the share over each candidate cutoff_len, and the smallest cutoff_len that keeps 99% / 100%
of the records whole, overall and by `data_source`. Image sizes come from the `headers` rows (file headers only)."""

from __future__ import annotations

import math
from itertools import accumulate

import duckdb
import numpy as np

from llava_lf.data.convert.records import IMAGE_PLACEHOLDER, LlavaTurn

from .model_view import ModelView
from .queries import _keyed, summary

HOST_CUTOFF_LEN = 2048  # the host's default cutoff_len (DataArguments)
CANDIDATES = (2048, 4096, 8192)  # cutoff_len values every card reports, with the host's default and --cutoff-len
CHARS_PER_TOKEN = 4  # without a tokenizer: text tokens estimated from characters (about 4 for English in LLaMA's)
NO_SOURCE = "(no data_source)"


def estimated_text_tokens(turns: list[LlavaTurn]) -> int:
    """Text tokens of the turns without a tokenizer: characters / CHARS_PER_TOKEN, rounded up, placeholders left out
    (the template's own text is not counted)."""
    chars = sum(len(turn["value"]) - len(IMAGE_PLACEHOLDER) * turn["value"].count(IMAGE_PLACEHOLDER) for turn in turns)
    return math.ceil(chars / CHARS_PER_TOKEN)


def data_source(record: object) -> str | None:
    value = record.get("data_source") if type(record) is dict else None
    return value if type(value) is str and value else None


def candidates(cutoff_len: int | None) -> list[int]:
    return sorted({*CANDIDATES, HOST_CUTOFF_LEN, *([cutoff_len] if cutoff_len else [])})


def _keep_and_over(counts: dict[int, int], cutoffs: list[int]) -> dict:
    """The distribution's summary, the smallest cutoff_len keeping 99% / 100% whole, and the records over each
    cutoff (a record of n tokens is whole under a cutoff_len >= n)."""
    stats = summary(counts)
    total = sum(counts.values())
    values = sorted(counts)
    at_or_below = dict(zip(values, accumulate(counts[value] for value in values)))
    over = {}
    for cutoff in cutoffs:
        kept = max((n for value, n in at_or_below.items() if value <= cutoff), default=0)
        over[str(cutoff)] = {"records": total - kept, "share": (total - kept) / total if total else 0.0}
    return {"samples": total, "tokens": stats, "keep_99": stats["p99"] if stats else None,
            "keep_100": stats["max"] if stats else None, "over": over}


def _size_tokens(con: duckdb.DuckDBPyConnection, view: ModelView) -> None:
    """Table `sizes`: each distinct readable image size and its token count under the view (one count per size)."""
    con.execute("CREATE OR REPLACE TEMP TABLE sizes (width INTEGER, height INTEGER, tokens BIGINT)")
    rows = con.execute("SELECT DISTINCT width, height FROM headers WHERE why IS NULL").fetchall()
    if rows:  # numpy columns, read by DuckDB's replacement scan (a photo set has tens of thousands of sizes)
        batch = {"width": np.array([w for w, _ in rows], dtype=np.int64),  # noqa: F841  (read by name in SQL)
                 "height": np.array([h for _, h in rows], dtype=np.int64),
                 "tokens": np.array([view.image_tokens(w, h) for w, h in rows], dtype=np.int64)}
        con.execute("INSERT INTO sizes SELECT width, height, tokens FROM batch")


def model_figures(con: duckdb.DuckDBPyConnection, view: ModelView, cutoff_len: int | None) -> dict:
    """card.json's `model` figures for one dataset."""
    if view.needs_sizes:
        _size_tokens(con, view)
        image_sql = ("SELECT u.idx, sum(z.tokens) AS tokens, count(z.tokens) AS known FROM uses u "
                     "JOIN headers h ON h.file = u.file JOIN sizes z ON z.width = h.width AND z.height = h.height "
                     "GROUP BY u.idx")
        per_image = dict(con.execute("SELECT z.tokens, count(*) FROM uses u JOIN samples s USING (idx) "
                                     "JOIN headers h ON h.file = u.file JOIN sizes z ON z.width = h.width "
                                     "AND z.height = h.height GROUP BY z.tokens ORDER BY z.tokens").fetchall())
    else:  # one count per image: no size needed
        image_sql = f"SELECT idx, images * {view.fixed} AS tokens, images AS known FROM samples"
        per_image = dict(con.execute(f"SELECT {view.fixed}, sum(images) FROM samples WHERE images > 0").fetchall()
                         ) if view.fixed is not None else {}
        per_image = {key: int(n) for key, n in per_image.items() if n}
    con.execute(f"CREATE OR REPLACE TEMP TABLE totals AS SELECT s.idx, s.data_source, s.images, "
                f"coalesce(i.tokens, 0) AS image_tokens, s.text + coalesce(i.tokens, 0) AS total, "
                f"coalesce(i.known, 0) = s.images AS known FROM samples s LEFT JOIN ({image_sql}) i USING (idx)")
    cutoffs = candidates(cutoff_len)

    def counts(column: str, where: str = "known") -> dict[int, int]:
        return dict(con.execute(f"SELECT {column}, count(*) FROM totals WHERE {where} GROUP BY 1 ORDER BY 1"
                                ).fetchall())

    totals = counts("total")
    figures = _keep_and_over(totals, cutoffs)
    figures |= {
        "unknown": con.execute("SELECT count(*) FROM totals WHERE NOT known").fetchone()[0],
        "image_tokens_per_image": summary(per_image), "image_tokens_per_image_counts": _keyed(per_image),
        "image_tokens_per_sample": summary(counts("image_tokens", "known AND images > 0")),
        "text_tokens_per_sample": summary(dict(con.execute("SELECT text, count(*) FROM samples GROUP BY 1"
                                                           ).fetchall())),
        "per_sample_counts": _keyed(totals), "cutoffs": cutoffs, "by_data_source": None,
    }
    if con.execute("SELECT count(*) FROM samples WHERE data_source IS NOT NULL").fetchone()[0]:
        grouped: dict[str, dict[int, int]] = {}
        for source, total, n in con.execute("SELECT coalesce(data_source, ?), total, count(*) FROM totals WHERE "
                                            "known GROUP BY ALL ORDER BY 1, 2", [NO_SOURCE]).fetchall():
            grouped.setdefault(source, {})[total] = n
        ranked = sorted(grouped.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        figures["by_data_source"] = {source: _keep_and_over(dist, cutoffs) for source, dist in ranked}
    return figures
