"""inspect's batch counters against the plain Python they stand for: `str.split`, a set, a `Counter`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llava_lf.common.owner_lock import FOLDER_LOCK, abandoned, held_folder
from llava_lf.data.inspect import accumulators, seen
from llava_lf.data.inspect.accumulators import KEY_CHARS, SPILL_PREFIX, RepeatCounter, spilling_to
from llava_lf.data.inspect.figures import PUNCTUATION
from llava_lf.data.inspect.seen import SeenHashes
from llava_lf.data.inspect.words import words_per_text

SEED = 1234
BIN = Path(sys.executable).parent
SPACES = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
ASCII_SPACES = [space for space in SPACES if space.isascii()]
ASCII_WORDS = ["a", "bus", "X", "0", "<", ">", "image", "<image>", "<ima", "ge>", "\x00", "\x1b", "\x7f", "-"]
WIDE_WORDS = ["é", "ÿ", "\u0100", "狗", "日本", "😀", "\U0010ffff", "\u3001", "\u2fff", "\ufeff", "\u200b", "\uffff",
              "\u180e"]  # U+180E and U+200B are no spaces for str.split, U+FEFF neither


def _texts(rng: random.Random, words: list[str], spaces: list[str]) -> list[str]:
    texts = []
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.15:
            texts.append("")
            continue
        pieces = [rng.choice(words) if rng.random() < 0.5 else rng.choice(spaces) for _ in range(rng.randint(1, 20))]
        texts.append("".join(pieces))
    return texts


@pytest.mark.parametrize("blank", [None, "<image>"])
@pytest.mark.parametrize("alphabet", ["ascii", "wide"])
def test_words_per_text_counts_as_str_split(alphabet, blank):
    rng = random.Random(SEED)
    words = ASCII_WORDS + (WIDE_WORDS if alphabet == "wide" else [])
    spaces = ASCII_SPACES if alphabet == "ascii" else SPACES
    checked = 0
    for _ in range(300):
        texts = _texts(rng, words, spaces)
        if alphabet == "wide" and texts and rng.random() < 0.5:
            texts[rng.randrange(len(texts))] += rng.choice(WIDE_WORDS)  # a wide batch, whatever was drawn
        expected = [len((text if blank is None else text.replace(blank, " ")).split()) for text in texts]
        got = words_per_text(texts, blank)
        assert got.dtype == np.int64 and got.tolist() == expected, texts
        checked += sum(expected)
    assert checked > 1000


def test_words_per_text_edges():
    assert words_per_text([]).tolist() == []
    assert words_per_text(["", "", ""]).tolist() == [0, 0, 0]
    assert words_per_text(["\n", "a\nb", "\n"]).tolist() == [0, 2, 0]  # the join's newline splits no text
    assert words_per_text(["<image>", "a<image>b", "<<image>image>>"], "<image>").tolist() == [0, 2, 2]
    every_space = "".join(SPACES)
    assert words_per_text([every_space, f"a{every_space}b", "".join(f"{s}w" for s in SPACES)]).tolist() == [
        0, 2, len(SPACES)]


# ---- SeenHashes ------------------------------------------------------------------------------------------------

def _keys(rng: random.Random, pool: list[int], count: int) -> list[int]:
    return [rng.choice(pool) for _ in range(count)]


def test_seen_hashes_is_a_set(monkeypatch):
    monkeypatch.setattr(seen, "RECENT", 8)  # merged into the sorted array every few additions
    rng = random.Random(SEED)
    pool = [0, -1, 1, 2**63 - 1, -(2**63), hash("a"), hash("b")] + [rng.randint(-(2**63), 2**63 - 1) for _ in range(400)]
    texts = [f"t{n}" for n in range(50)] + ["", "\ud800", "狗"]
    table, reference = SeenHashes(), set()
    merges = 0
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.3:
            text = rng.choice(texts)
            assert table.add(text) == (hash(text) not in reference)
            reference.add(hash(text))
        elif roll < 0.5:
            key = rng.choice(pool)
            assert table.add_hash(key) == (key not in reference)
            reference.add(key)
        elif roll < 0.75:
            keys = _keys(rng, pool, rng.choice([0, 1, 3, 12]))
            new = len(set(keys)) == len(keys) and reference.isdisjoint(keys)
            assert table.add_all_new(keys) == new
            if new:
                reference.update(keys)
        else:
            keys = _keys(rng, pool, rng.choice([0, 1, 5, 20]))
            expected = []
            for position, key in enumerate(keys):
                if key in reference:
                    expected.append(position)
                reference.add(key)
            assert table.add_each(keys) == expected
        assert len(table) == len(reference)
        merges += len(table._recent) == 0
    assert merges > 10 and len(table._sorted) > 100  # the sorted array was built and searched
    assert all(not table.add_hash(key) for key in reference)


# ---- RepeatCounter ---------------------------------------------------------------------------------------------

def _corpus(rng: random.Random, count: int) -> list[str]:
    """Texts with a few very frequent (distinct counts), many repeated a little, most seen once; some longer than
    the key, differing only past it."""
    frequent = [f"What is shown {n}?" for n in range(6)]
    texts = [text for n, text in enumerate(frequent) for _ in range(40 - 5 * n)]
    common = [rng.choice(["Describe", "describe:", "WHAT", "'Is'", "Where"]) + f" thing {n} here" for n in range(60)]
    texts += [rng.choice(common) for _ in range(count // 3)]
    texts += [f"once {n} 狗 {rng.random()}" for n in range(count // 3)]
    long = "x" * KEY_CHARS
    texts += [long + str(n) for n in range(20)]  # one key, twenty texts
    texts += ["", "   ", "\u3000word", "-", "Hello, world!", "hello world"] * 3
    rng.shuffle(texts)
    return texts


def _reference(texts: list[str]) -> tuple[Counter, Counter, Counter]:
    keys = Counter(text[:KEY_CHARS] for text in texts)
    first, first_two = Counter(), Counter()
    for text in texts:
        words = [word.strip(PUNCTUATION) for word in text.lower().split()[:2]]
        first[words[0] if words else ""] += 1
        first_two[" ".join(word for word in words if word)] += 1
    return keys, first, first_two


def _assert_counts(counter: RepeatCounter, texts: list[str], n: int) -> None:
    keys, first, first_two = _reference(texts)
    repeated = {key: count for key, count in keys.items() if count > 1}
    assert n >= len(repeated)  # every repeated text is listed, so ties cannot choose
    assert counter.total == len(texts)
    assert counter.most_repeated(n) == (len(keys), len(repeated), sorted(repeated.items(),
                                                                         key=lambda item: (-item[1], item[0])))
    assert counter.opening_counts(PUNCTUATION) == (first, first_two)


@pytest.fixture
def small_spills(monkeypatch):
    monkeypatch.setattr(accumulators, "SPILL_AT", 100)
    monkeypatch.setattr(accumulators, "FLUSH", 37)


def _feed(counter: RepeatCounter, texts: list[str], rng: random.Random) -> None:
    position = 0
    while position < len(texts):
        step = rng.choice([1, 5, 50, 120])
        counter.update(texts[position:position + step])
        position += step


def test_repeat_counter_spilled_counts_as_a_counter(tmp_path, small_spills):
    rng = random.Random(SEED)
    texts = _corpus(rng, 900)
    counter = RepeatCounter(openings=True)
    with spilling_to(tmp_path):
        _feed(counter, texts, rng)
        _assert_counts(counter, texts, 200)
    spilled = list(tmp_path.glob("repeats-*"))
    assert len(spilled) >= accumulators.BUCKETS * 5 and counter._spilled
    top = counter.most_repeated(3)[2]  # the frequent ones have distinct counts: the top three are fixed
    assert top == [("What is shown 0?", 40), ("What is shown 1?", 35), ("What is shown 2?", 30)]
    more = ["What is shown 5?"] * 30
    with spilling_to(tmp_path):
        counter.update(more)  # still counting after a count was read
        _assert_counts(counter, texts + more, 200)


def test_repeat_counter_without_a_spill_folder_holds_everything(tmp_path, small_spills):
    rng = random.Random(SEED + 1)
    texts = _corpus(rng, 600)
    counter = RepeatCounter(openings=True)
    _feed(counter, texts, rng)
    _assert_counts(counter, texts, 200)
    assert not counter._spilled and not list(tmp_path.iterdir())


@pytest.mark.parametrize("settle", [False, True])
def test_repeat_counter_merge_gives_one_counters_counts(tmp_path, small_spills, settle):
    rng = random.Random(SEED + 2)
    texts = _corpus(rng, 900)
    cut = len(texts) // 2
    # Every repeated text repeats within the first half (one seen once in each needs `mark_seen`: see below).
    first_half = Counter(text[:KEY_CHARS] for text in texts[:cut])
    texts = texts[:cut] + [text for text in texts[cut:] if first_half[text[:KEY_CHARS]] != 1]
    whole = RepeatCounter(openings=True)
    _feed(whole, texts, rng)
    spilled, held = RepeatCounter(openings=True), RepeatCounter(openings=True)
    with spilling_to(tmp_path):
        _feed(spilled, texts[:cut], rng)
        if settle:  # as a split scan's second process does before sending its counts back
            spilled.settle()
    _feed(held, texts[cut:], rng)
    assert spilled._spilled and not held._spilled
    other, spilled_again = RepeatCounter(openings=True), RepeatCounter(openings=True)
    _feed(other, texts[cut:], rng)
    with spilling_to(tmp_path):
        _feed(spilled_again, texts[:cut], rng)
    other.merge(spilled_again)  # the unspilled one absorbs the spilled one
    _assert_counts(other, texts, 200)
    spilled.merge(held)  # and the reverse
    _assert_counts(spilled, texts, 200)
    assert spilled.most_repeated(200) == whole.most_repeated(200)


def test_a_counter_primed_with_mark_seen_keeps_the_text_of_one_seen_once_in_each():
    """A split scan's second part marks the first part's texts as seen (`mark_seen`), so a text seen once in
    each part keeps its words after the merge, as in one pass; unprimed, it would not."""
    first, second, unprimed, whole = RepeatCounter(), RepeatCounter(), RepeatCounter(), RepeatCounter()
    first.update(["shared", "a"])
    second.mark_seen(["shared", "a"])
    second.update(["shared", "b"])
    unprimed.update(["shared", "b"])
    whole.update(["shared", "a", "shared", "b"])
    first.merge(second)
    assert first.most_repeated(5) == whole.most_repeated(5) == (3, 1, [("shared", 2)])
    assert first.total == whole.total == 4  # marking counts nothing
    lost = RepeatCounter()
    lost.update(["shared", "a"])
    lost.merge(unprimed)
    assert lost.most_repeated(5) == (3, 1, [("(text not kept: too rare to hold in memory)", 2)])


def test_the_most_repeated_keep_their_words_past_the_capacity():
    rng = random.Random(SEED + 3)
    frequent = {f"frequent {n}": 30 + n for n in range(3)}
    texts = [text for text, count in frequent.items() for _ in range(count)]
    texts += [f"noise {n % 400}" for n in range(1200)]  # 400 texts seen 3 times, past a capacity of 50
    rng.shuffle(texts)
    counter = RepeatCounter(capacity=50)
    _feed(counter, texts, rng)
    distinct, repeated, top = counter.most_repeated(3)
    assert (distinct, repeated) == (403, 403)
    assert top == sorted(frequent.items(), key=lambda item: -item[1])
    assert counter._texts.dropped_below > 0  # the noise was pruned


def test_a_killed_run_leaves_a_spill_folder_the_next_run_removes(tmp_path):
    """kill -9 mid-scan leaves the spill folder behind (nothing can clean up); the next run removes it (the
    OS freed its lock when the run's processes died) and keeps a folder whose lock a live run holds."""
    records = [{"id": f"r{n}", "image": f"coco/{n}.jpg",
                "conversations": [{"from": "human", "value": f"<image>\nWhat is item {n} {' '.join(['word'] * 40)}?"},
                                  {"from": "gpt", "value": f"Item {n} is {' '.join(['thing'] * 60)}."}] * 3}
               for n in range(60_000)]
    data = tmp_path / "big.json"
    data.write_text(json.dumps(records))
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    command = [str(BIN / "llava-lf"), "inspect", str(data), "--out", str(tmp_path / "card")]
    # Its own process group: the kill takes a forked scanning child too, which would hold the lock on.
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not any(_held(folder) for folder in temp.glob(f"{SPILL_PREFIX}*")):
        assert process.poll() is None and time.monotonic() < deadline, "inspect ended before it held a spill folder"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    left = list(temp.glob(f"{SPILL_PREFIX}*"))
    assert left, "the killed run's spill folder is gone: nothing left to test"
    deadline = time.monotonic() + 30
    while any(_held(folder) for folder in left):  # the group's last process may take an instant to go
        assert time.monotonic() < deadline, "the killed run's lock is still held"
        time.sleep(0.05)
    small = tmp_path / "small.json"
    small.write_text(json.dumps(records[:10]))
    with held_folder(temp, SPILL_PREFIX) as alive:  # a run still going (this process holds the lock)
        finished = subprocess.run([*command[:2], str(small), "--out", str(tmp_path / "card2")], env=env,
                                  capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        assert not any(folder.exists() for folder in left)
        assert (alive / FOLDER_LOCK).exists()
        assert sorted(path.name for path in temp.iterdir()) == [alive.name]  # the finished run removed its own
    assert list(temp.iterdir()) == []


def _held(folder: Path) -> bool:
    """Whether a live run holds `folder`'s lock (taking a free one only for a moment)."""
    if not (folder / FOLDER_LOCK).exists():
        return False
    with abandoned(folder / FOLDER_LOCK) as free:
        return not free
