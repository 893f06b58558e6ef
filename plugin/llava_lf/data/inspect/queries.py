"""One dataset's card figures (what card.json holds), each a query over the rows its scan stored (`store`): one
definition of each figure, whatever the file's size."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate

import duckdb

from .figures import PUNCTUATION
from .images import RATIO_LABELS

TOP = 15  # rows in each "most common" list
EXAMPLES = 10  # examples kept per kind of finding
PART_ROWS = 1_000_000  # texts counted at a time


def summary(counts: dict[int, int]) -> dict | None:
    """count, mean, min, p50, p90, p99, max and total of a distribution given as value -> count; a quantile q is
    the smallest value with at least q of the records at or below it."""
    count = sum(counts.values())
    if not count:
        return None
    values = sorted(counts)
    cumulative = list(accumulate(counts[value] for value in values))
    total = sum(value * n for value, n in counts.items())
    quantiles = {f"p{round(q * 100)}": values[bisect.bisect_left(cumulative, q * count)] for q in (0.5, 0.9, 0.99)}
    return {"count": count, "mean": round(total / count, 2), "min": values[0], **quantiles, "max": values[-1],
            "total": total}


@dataclass(frozen=True)
class TextCounts:
    total: int
    distinct: int
    repeated: int  # distinct texts seen twice or more
    top: list[tuple[str, int]]  # the TOP seen most often (twice or more), with their counts


class DatasetQueries:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def rows(self, sql: str) -> list[tuple]:
        return self._con.execute(sql).fetchall()

    def value(self, sql: str):
        return self._con.execute(sql).fetchone()[0]

    def ranked(self, column: str, table: str = "records", where: str = "readable", order: str = "min(idx)") -> dict:
        """column value -> rows, most rows first, ties in the order first seen."""
        return dict(self.rows(f"SELECT {column}, count(*) AS n FROM {table} WHERE {where} GROUP BY {column} "
                              f"ORDER BY n DESC, {order}"))

    def counts(self, column: str, table: str = "records", where: str = "readable") -> dict[int, int]:
        return dict(self.rows(f"SELECT {column}, count(*) FROM {table} WHERE {where} AND {column} IS NOT NULL "
                              f"GROUP BY {column} ORDER BY {column}"))

    def texts(self, table: str, key: str = "h", text: str = "text", where: str = "true") -> TextCounts:
        """How often each text occurs, grouped by a 64-bit hash of it (`key`; two texts share one with probability
        about n^2 / 2^65), so millions of distinct texts group in little memory; only the top ones are read back."""
        # A part of the hashes at a time: on mix665k one hash table of 3.7M groups failed to get memory at some
        # limits (96 MB, 192 MB), parts of at most PART_ROWS rows never did, down to 64 MB.
        parts = 1 + self.value(f"SELECT count(*) FROM {table} WHERE {where}") // PART_ROWS
        self._con.execute("CREATE OR REPLACE TEMP TABLE counted (h UBIGINT, n BIGINT)")
        for part in range(parts):
            self._con.execute(f"INSERT INTO counted SELECT {key} AS h, count(*) FROM {table} "
                              f"WHERE {where} AND h % {parts} = {part} GROUP BY h")
        total, distinct, repeated = self.rows("SELECT sum(n), count(*), count(*) FILTER (n > 1) FROM counted")[0]
        counts = dict(self.rows(f"SELECT h, n FROM counted WHERE n > 1 ORDER BY n DESC, h LIMIT {TOP}"))
        texts = self.rows(f"SELECT {key} AS h, any_value({text}) FROM {table} WHERE {where} AND h IN "
                          f"({', '.join(map(str, counts))}) GROUP BY h") if counts else []
        top = sorted(((value, counts[h]) for h, value in texts), key=lambda item: (-item[1], item[0]))
        return TextCounts(int(total or 0), distinct, repeated, top)

    def card(self, label: str, path: str, headers: bool, tokens: bool, cutoff_len: int | None) -> dict:
        records, read, with_image, multi_image = self.rows(
            "SELECT count(*), count(*) FILTER (readable), count(*) FILTER (readable AND images > 0), "
            "count(*) FILTER (readable AND images > 1) FROM records")[0]
        pairs, words = self.counts("pairs"), self.counts("words")
        return {
            "label": label, "path": path,
            "formats": self.ranked("CASE WHEN converted THEN 'converted' ELSE 'llava' END", where="true"),
            "composition": {
                "records": records, "with_image": with_image, "text_only": read - with_image,
                "multi_image": multi_image, "sources": self.ranked("source"), "types": self.ranked("type"),
                "types_told_by": self.ranked("told_by"),
                "pairs_per_record": summary(pairs), "pairs_per_record_counts": _keyed(pairs),
            },
            "lengths": {
                "words_per_record": summary(words), "words_per_record_counts": _keyed(words),
                "answer_words_by_type": self._answer_words(),
                "tokens": self._tokens(cutoff_len) if tokens else None,
            },
            "diversity": self._diversity(),
            "images": self._images(headers),
            "problems": self._problems(records),
        }

    def _answer_words(self) -> dict[str, dict | None]:
        by_type: dict[str, dict[int, int]] = {kind: {} for kind, in self.rows(
            "SELECT DISTINCT type FROM records WHERE readable")}  # a type without answers shows as None
        for kind, words, n in self.rows("SELECT type, words, count(*) FROM answers GROUP BY ALL"):
            by_type[kind][words] = n
        return {kind: summary(counts) for kind, counts in sorted(by_type.items())}

    def _tokens(self, cutoff_len: int | None) -> dict:
        counts = self.counts("tokens", "tokens", "true")
        row = {"per_record": summary(counts), "cutoff_len": cutoff_len, "per_record_counts": _keyed(counts)}
        if cutoff_len is not None:
            actions = dict(self.rows("SELECT fit, count(*) FROM tokens GROUP BY fit"))
            over = actions.get("trimmed", 0) + actions.get("dropped", 0)
            cut = self.counts("pairs_cut", "tokens", "pairs_cut > 0")
            row |= {"over_cutoff": over, "over_cutoff_share": over / sum(counts.values()) if counts else 0.0,
                    "trimmed": actions.get("trimmed", 0), "dropped": actions.get("dropped", 0),
                    "pairs_cut": sum(k * n for k, n in cut.items()), "pairs_cut_per_record": _keyed(cut)}
        return row

    def _diversity(self) -> dict:
        first: Counter[str] = Counter()
        first_two: Counter[str] = Counter()
        for opening, n in self.rows("SELECT opening, count(*) FROM questions GROUP BY opening"):
            words = [word.strip(PUNCTUATION) for word in opening.lower().split()]
            first[words[0] if words else ""] += n
            first_two[" ".join(word for word in words if word)] += n
        questions, answers = self.texts("questions"), self.texts("answers")
        duplicates = self.rows(f"SELECT idx, rid FROM records WHERE readable QUALIFY row_number() OVER "
                               f"(PARTITION BY content ORDER BY idx) > 1 ORDER BY idx LIMIT {EXAMPLES}")
        return {
            "questions": questions.total, "distinct_questions": questions.distinct,
            "answers": answers.total, "distinct_answers": answers.distinct,
            "question_first_word": _top(first), "question_first_two_words": _top(first_two),
            "repeated_questions": [{"text": t, "count": n} for t, n in questions.top],
            "repeated_answers": [{"text": t, "count": n} for t, n in answers.top],
            "exact_duplicate_records": self.value("SELECT count(*) - count(DISTINCT content) FROM records "
                                                  "WHERE readable"),
            "duplicate_examples": [record_name(idx, rid) for idx, rid in duplicates],
        }

    def _images(self, headers: bool) -> dict:
        uses = self.texts("uses", "hash(written)", "written", "file IS NOT NULL")
        missing_uses, missing = self.rows("SELECT count(*), count(DISTINCT written) FROM uses WHERE file IS NULL")[0]
        readable = "why IS NULL"
        ratios = self.ranked("ratio", "headers", readable, "ratio")
        return {
            "uses": uses.total, "distinct": uses.distinct, "headers_read": headers,
            "used_by_several_records": uses.repeated,
            "width": summary(self.counts("width", "headers", readable)),
            "height": summary(self.counts("height", "headers", readable)),
            "aspect_ratio": {label: ratios[label] for label in RATIO_LABELS if label in ratios},
            "formats": self.ranked("format", "headers", readable, "min(first)"),
            "missing": missing, "missing_uses": missing_uses,
            "missing_examples": [path for path, in self.rows(f"SELECT written FROM uses WHERE file IS NULL GROUP BY "
                                                             f"written ORDER BY min(use) LIMIT {EXAMPLES}")],
            "unreadable": self.value("SELECT count(*) FROM headers WHERE why IS NOT NULL"),
            "unreadable_examples": [{"image": path, "why": why} for path, why in self.rows(
                f"SELECT written, why FROM headers WHERE why IS NOT NULL ORDER BY first LIMIT {EXAMPLES}")],
            "most_used": [{"image": path, "records": n} for path, n in uses.top],
        }

    def readable_images(self) -> list[tuple[str, str]]:
        """(file, as the records name it) of each distinct readable image, in order of first use."""
        return self.rows("SELECT file, written FROM headers WHERE why IS NULL ORDER BY first")

    def _problems(self, records: int) -> dict:
        rejected = self.value("SELECT count(*) FROM problems")
        examples: dict[str, list[dict]] = {}
        for reason, idx, rid, line, field, message, fix in self.rows(
                "SELECT reason, idx, rid, line, field, message, fix FROM (SELECT * FROM problems QUALIFY "
                "row_number() OVER (PARTITION BY reason ORDER BY idx) <= 3) JOIN records USING (idx) ORDER BY idx"):
            examples.setdefault(reason, []).append({"record": record_name(idx, rid), "line": line, "field": field,
                                                    "message": message, "fix": fix})
        empty, refusal_answers, refusal_records, non_latin = self.rows(
            "SELECT coalesce(sum(empty_answers), 0), coalesce(sum(refusals), 0), count(*) FILTER (refusals > 0), "
            "count(*) FILTER (non_latin) FROM records WHERE readable")[0]
        return {
            "rejected": rejected, "rejected_share": rejected / records if records else 0.0,
            "reasons": self.ranked("reason", "problems", "true"), "examples": examples,
            "empty_answers": int(empty), "refusal_answers": int(refusal_answers), "refusal_records": refusal_records,
            "refusal_examples": [{"record": record_name(idx, rid), "answer": answer} for idx, rid, answer in self.rows(
                f"SELECT idx, rid, refusal FROM records WHERE refusals > 0 ORDER BY idx LIMIT {EXAMPLES}")],
            "non_latin_records": non_latin,
        }


def record_name(index: int, rid: str | None) -> str:
    return f"record {index}" + (f" (id {rid})" if rid is not None else "")


def _keyed(counts: dict[int, int]) -> dict[str, int]:
    return {str(value): n for value, n in counts.items()}


def _top(counts: Counter[str]) -> list[dict]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return [{"words": words, "count": n} for words, n in ranked]
