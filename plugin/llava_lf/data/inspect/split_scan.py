"""Scan one large file in two processes, with every figure exactly what one pass gives.

The file is cut at a record boundary (`reading.split_point`). This process scans the first part; a
forked process scans the second after reading the first part's ids and record contents only (what the
duplicate checks remember), so the second part's duplicates are the file's. The two parts' figures
then merge (`DatasetStats.merge`): counts add, examples keep file order, and text hashes compare
because a forked process keeps its parent's hash seed. A part that does not read as whole records
(`HandOver`: a syntax error, a boundary that was a nested object's) gives up the split, and the file is
read again in one pass, so errors are reported as that pass reports them.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from .figures import record_figures
from .kinds import TypeRule
from .plain_batch import plain_seed
from .reading import CHUNK, HandOver, iter_part, split_point
from .stats import DatasetStats
from .verdict import ConverterChecks

SPLIT_BYTES = 64 << 20  # smaller files are read in one pass
SHARE = 0.68  # the first part's share of the bytes: the second part also reads the first's ids and contents


def scan_split(path: Path, stats: DatasetStats, make_checks: Callable[[], ConverterChecks], rule: TypeRule,
               scan: Callable) -> DatasetStats | None:
    """`stats` with the file's figures, scanned in two processes; None when the file is read in one pass."""
    if (os.cpu_count() or 1) < 2 or path.stat().st_size < SPLIT_BYTES or (point := split_point(path, SHARE)) is None:
        return None
    end, begin = point
    # Both parts fill copies (still empty): a split given up leaves `stats` untouched for the one pass.
    stats, later = copy.deepcopy(stats), copy.deepcopy(stats)
    context = multiprocessing.get_context("fork")  # the child must share the hash seed (and needs no pickling)
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_second_part, args=(send, path, end, begin, later, make_checks, rule, scan))
    child.start()
    send.close()
    try:
        scan(iter_part(path, 0, end, 0), make_checks(), rule, stats, None, False)
        result = receive.recv()
    except (HandOver, EOFError):
        result = None
    finally:
        if child.is_alive() and result is None:
            child.terminate()
        child.join()
        receive.close()
    if result is None:
        return None
    stats.merge(result, _newlines(path, begin) if result.rejection_examples else 0)
    return stats


def _second_part(send, path: Path, end: int, begin: int, stats: DatasetStats,
                 make_checks: Callable[[], ConverterChecks], rule: TypeRule, scan: Callable) -> None:
    try:
        checks, contents, index = make_checks(), stats._contents, 0
        # What the duplicate checks remember of the first part, and which questions and answers it holds
        # (so a text seen once in each part keeps its words, as in one pass).
        for batch in iter_part(path, 0, end, 0):
            texts = plain_seed(batch.values, index, checks, contents)
            if texts is None:
                texts = ([], [])
                for position, value in enumerate(batch.values, index):
                    figures = record_figures(value, checks.claim(value, position), rule)
                    if figures is not None:
                        contents.add_hash(figures.key)
                        texts[0].extend(figures.questions)
                        texts[1].extend(figures.answers)
            stats.questions.mark_seen(texts[0])
            stats.answers.mark_seen(texts[1])
            index += len(batch.values)
        scan(iter_part(path, begin, None, index), checks, rule, stats, None, False)
        stats.settle()
    except HandOver:
        stats = None
    send.send(stats)
    send.close()


def _newlines(path: Path, end: int) -> int:
    """Newlines before byte `end`: the second part's lines start after them."""
    count = 0
    with open(path, "rb") as handle:
        while end > 0 and (chunk := handle.read(min(CHUNK, end))):
            count += chunk.count(b"\n")
            end -= len(chunk)
    return count
