"""Property-based fuzzing of `convert` and `check`: random LLaVA records (valid and hostile) and arguments.

For every example: no traceback; exit code 0, 1 or 2 as documented; every input record either written
or listed in the rejection report; check rejects exactly what convert rejects; nothing outside `--out`
(or `--report`) touched; inputs byte-identical; a failed run leaves `--out` as it was.

Bounded for `make test`; a longer run: `LLAVA_LF_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest
tests/test_convert_fuzz.py` (the subprocess test takes a tenth of that number).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from llava_lf.cli import run

EXAMPLES = int(os.environ.get("LLAVA_LF_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("LLAVA_LF_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: what `json.dumps` cannot produce (a 5,000-digit integer, 100K-deep nesting)."""

    text: str


def dump(value: object) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {dump(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(item) for item in value) + "]"
    return json.dumps(value)  # ensure_ascii: a lone surrogate becomes the escape a hostile file would hold


SPECIAL_TEXT = ["<image>", "<image>\n", "\ud800", "\udfff", "\0", "\n", " ", "\u2028", "\ufeff", "😀"]
text = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(SPECIAL_TEXT)), max_size=5).map("".join)
huge = st.sampled_from([Raw("9" * 5000), Raw("-" + "1" * 4400), Raw("1e999"), Raw("123456789012345678901234567890")])
deep = st.integers(1_000, 3_000).map(lambda n: Raw("[" * n + "]" * n))
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text, huge)
json_any = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(text, inner, max_size=3)), max_leaves=6)
PATHS = ["a.png", "sub/b.png", "./sub//b.png", "missing.png", "../outside.png", "/etc/hostname", "loop", "sub",
         "a.png\0x", "a\udc80.png", "n" * 5000 + ".png", "link-out.png", " ", ""]
path = st.one_of(st.sampled_from(PATHS), text)
role = st.one_of(st.sampled_from(["human", "gpt", "system"]), st.sampled_from(["user", ["human"], {"a": 1}, None]))
turn = st.one_of(st.fixed_dictionaries({"from": role, "value": st.one_of(text, json_any)}), json_any)


@st.composite
def good_record(draw) -> dict:
    """A record that passes (when its id is unique): one image or none, alternating turns."""
    image = draw(st.sampled_from([None, "a.png", "sub/b.png"]))
    pairs = draw(st.integers(1, 3))
    turns = []
    for n in range(pairs):
        question = draw(st.text(st.characters(min_codepoint=33, max_codepoint=0x2fff, exclude_characters="<"),
                                min_size=1, max_size=12))
        turns += [{"from": "human", "value": ("<image>\n" if image and n == 0 else "") + question},
                  {"from": "gpt", "value": draw(st.sampled_from(["Yes.", "A square.", "Two."]))}]
    record: dict = {"conversations": turns}
    if image:
        record["image"] = image
    if draw(st.booleans()):
        record["id"] = draw(st.one_of(st.integers(0, 50), st.text("abc123", min_size=1, max_size=3)))
    return record


hostile_record = st.one_of(
    st.fixed_dictionaries({}, optional={"id": st.one_of(text, st.integers(), huge, json_any),
                                        "image": st.one_of(path, st.lists(path, max_size=3), json_any),
                                        "conversations": st.one_of(st.lists(turn, max_size=4), json_any)}),
    json_any, deep)
records = st.lists(st.one_of(good_record(), good_record(), hostile_record), max_size=8)
NAMES = ["mine", "mine", "x.y-z_1", "../x", "", "a/b", ".h", "dataset_info", "n" * 300]


def _layout(root: Path) -> tuple[Path, Path]:
    """An image folder (with a symlink loop, a folder and a link out) and an outside file."""
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(images / "a.png")
    (images / "sub" / "b.png").write_bytes((images / "a.png").read_bytes())
    (images / "loop").symlink_to(images / "loop")
    (root / "outside.png").write_bytes((images / "a.png").read_bytes())
    (images / "link-out.png").symlink_to(root / "outside.png")
    return images, root / "out"


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            if path in skip:
                continue
            found[str(path.relative_to(root))] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


def _write_source(root: Path, values: list, jsonl: bool) -> Path:
    src = root / ("src.jsonl" if jsonl else "src.json")
    body = "\n".join(map(dump, values)) + "\n" if jsonl else "[\n" + ",\n".join(map(dump, values)) + "\n]\n"
    src.write_text(body, encoding="utf-8")
    return src


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    # JSON Lines end at "\n" only: str.splitlines would also cut at U+0085 and U+2028 inside a value.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def _in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    return code, out.getvalue(), err.getvalue()


def _subprocess(argv: list[str]) -> tuple[int, str, str]:
    result = subprocess.run([str(BIN / "llava-lf"), *argv], capture_output=True, text=True, timeout=120, check=False,
                            errors="backslashreplace")
    return result.returncode, result.stdout, result.stderr


def _lone_object(values: list, jsonl: bool) -> bool:
    """A file that is one JSON object and no record: unusable as a whole (exit 2), never an empty dataset."""
    return jsonl and len(values) == 1 and isinstance(values[0], dict) and "conversations" not in values[0]


def check_properties(values: list, jsonl: bool, name: str, flags: list[str], existing: bool, invoke) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, out = _layout(root)
        src = _write_source(root, values, jsonl)
        report = root / "check.report.jsonl"
        if existing:  # a good dataset from an earlier run, which a failed run must leave alone
            old = _write_source(root / "images", [{"id": "old", "conversations": [
                {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}], jsonl=False)
            assert invoke(["convert", str(old), "--image-folder", str(images), "--out", str(out), "--name",
                           "mine"])[0] == 0
            old.unlink()
        outside = _snapshot(root, skip=(out, report))
        before = _snapshot(out, skip=()) if out.exists() else None

        code, stdout, stderr = invoke(["convert", str(src), "--image-folder", str(images), "--out", str(out),
                                       "--name", name, *flags])
        assert "Traceback" not in stderr and code in (0, 1, 2), (code, stderr)
        assert _snapshot(root, skip=(out, report)) == outside  # inputs and everything else untouched
        if code == 2:
            assert (_snapshot(out, skip=()) if out.exists() else None) == before, stderr
        else:
            written, rejected = _rows(out / f"{name}.jsonl"), _rows(out / f"{name}.rejected.jsonl")
            assert len(written) + len(rejected) == len(values), stdout
            assert sorted({row["index"] for row in rejected}) == [row["index"] for row in rejected]
            assert all("record" in row or "record_text" in row for row in rejected)
            assert len({row["id"] for row in written}) == len(written)  # ids unique, index ids included
            assert (code == 1) == ("--strict" in flags and bool(rejected))
        template = flags[flags.index("--template") + 1] if "--template" in flags else "llava_v1"
        check_code, _, check_err = invoke(["check", str(src), "--image-folder", str(images), "--report",
                                           str(report), "--template", template])
        assert "Traceback" not in check_err and check_code in (0, 1, 2), check_err
        assert _snapshot(root, skip=(out, report)) == outside
        if code in (0, 1) and check_code in (0, 1):  # the same validator: the same records rejected
            assert [row["index"] for row in _rows(report)] == [row["index"] for row in rejected]
        if _lone_object(values, jsonl):
            assert code == 2 and check_code == 2


flags = st.lists(st.sampled_from(["--strict", "--absolute-paths", "--allow-symlinks", "--template=llava_plain",
                                  "--workers=1", "--workers=0", "--max-pixels=-5"]), unique=True, max_size=3)


def _argv_flags(drawn: list[str]) -> list[str]:
    return [part for flag in drawn for part in flag.split("=", 1)]


@pytest.mark.slow  # 40 examples: ~15 s
@FUZZ
@given(values=records, jsonl=st.booleans(), name=st.sampled_from(NAMES), drawn=flags, existing=st.booleans())
def test_fuzz_convert_and_check_in_process(values, jsonl, name, drawn, existing):
    check_properties(values, jsonl, name, _argv_flags(drawn), existing, _in_process)


@settings(FUZZ, max_examples=max(3, EXAMPLES // 12))
@given(values=records, jsonl=st.booleans(), name=st.sampled_from(NAMES), drawn=flags)
@pytest.mark.timeout(600)
def test_fuzz_the_console_script(values, jsonl, name, drawn):
    check_properties(values, jsonl, name, _argv_flags(drawn), False, _subprocess)
