"""`convert` / `check` against hostile files and arguments: nothing lost, nothing overwritten, each bad record alone.

Most cases run `llava_lf.cli.run` in this process (the same parser and exit-code mapping as the
console script); one runs the real `llava-lf` to prove the script agrees.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BIN
from PIL import Image

from llava_lf.cli import run
from llava_lf.data.convert.writer import AtomicFile
from llava_lf.errors import EXIT_BAD_INPUT, EXIT_OK

Q = "<image>\nWhat is shown?"


def _pair(question: str = Q, answer: str = "A blue square.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _good(record_id: str) -> dict:
    return {"id": record_id, "image": "a.png", "conversations": _pair()}


@pytest.fixture()
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (16, 16), (0, 90, 200)).save(folder / "a.png")
    return folder


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def _cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = run([str(arg) for arg in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]  # "\n" only: not U+2028


# --- where convert writes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden", "x" * 200, "dataset_info", "a\\b", "..", "n.",
                                  "na me", "caf\u00e9"])
def test_bad_names_are_rejected_before_anything_is_written(tmp_path, images, capsys, name):
    src = _write(tmp_path / "src.json", [_good("a")])
    before = _tree(tmp_path)
    code, _, err = _cli(capsys, "convert", src, "--image-folder", images, "--out", tmp_path / "out", "--name", name)
    assert code == EXIT_BAD_INPUT and "is not a plain dataset name" in err
    assert _tree(tmp_path) == before and not (tmp_path / "out").exists()


def test_convert_never_writes_over_its_source(tmp_path, images, capsys):
    out = tmp_path / "out"
    out.mkdir()
    src = _write(out / "mine.jsonl", [_good("a"), {"id": "b"}])
    before = src.read_bytes()
    code, _, err = _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "mine")
    assert code == EXIT_BAD_INPUT and "would destroy the input" in err
    assert src.read_bytes() == before and sorted(os.listdir(out)) == ["mine.jsonl"]
    # Nor through a symlink or a hard link named like an output.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.rejected.jsonl").symlink_to(src)
    os.link(src, tmp_path / "other" / "dataset_info.json")
    code, _, err = _cli(capsys, "convert", src, "--image-folder", images, "--out", tmp_path / "other", "--name",
                        "mine")
    assert code == EXIT_BAD_INPUT and err.count("would destroy the input") == 2 and src.read_bytes() == before


def test_check_report_never_writes_over_its_source(tmp_path, images, capsys):
    src = _write(tmp_path / "src.json", [_good("a"), {"id": "b"}])
    before = src.read_bytes()
    code, _, err = _cli(capsys, "check", src, "--image-folder", images, "--report", src)
    assert code == EXIT_BAD_INPUT and "would destroy the input" in err and src.read_bytes() == before


def test_a_run_that_keeps_nothing_replaces_nothing(tmp_path, images, capsys):
    src = _write(tmp_path / "src.json", [_good("a"), _good("b")])
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "mine")[0] == EXIT_OK
    before = _tree(out)
    wrong = tmp_path / "empty-folder"
    wrong.mkdir()  # a mistyped --image-folder: every record's image is missing
    code, _, err = _cli(capsys, "convert", src, "--image-folder", wrong, "--out", out, "--name", "mine")
    assert code == EXIT_BAD_INPUT and "2 records read, none kept: nothing was written" in err
    assert "rejected missing_image: 2" in err and "llava-lf check" in err
    assert _tree(out) == before
    empty = _write(tmp_path / "empty.json", [])
    code, _, err = _cli(capsys, "convert", empty, "--image-folder", images, "--out", out, "--name", "mine")
    assert code == EXIT_BAD_INPUT and "holds no records" in err and _tree(out) == before
    assert _cli(capsys, "check", empty, "--image-folder", images)[0] == EXIT_BAD_INPUT


def test_an_index_used_as_id_is_checked_against_explicit_ids(tmp_path, images, capsys):
    no_id = {"image": "a.png", "conversations": _pair()}
    src = _write(tmp_path / "src.json", [_good("1"), no_id, no_id, _good("2")])  # indices 1, 2 -> ids "1", "2"
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "m")[0] == EXIT_OK
    ids = [row["id"] for row in _rows(out / "m.jsonl")]
    assert ids == ["1", "2"] and len(set(ids)) == len(ids)
    rejected = _rows(out / "m.rejected.jsonl")
    assert [(row["index"], row["reason"]) for row in rejected] == [(1, "duplicate_id"), (3, "duplicate_id")]
    assert "no id" in rejected[0]["message"] and rejected[1]["id"] == "2"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", None])
def test_a_bad_dataset_info_is_named_before_anything_is_written(tmp_path, images, capsys, content):
    out = tmp_path / "out"
    out.mkdir()
    info = out / "dataset_info.json"
    if content is None:
        info.mkdir()  # a folder where the file should be
    else:
        info.write_bytes(content)
    src = _write(tmp_path / "src.json", [_good("a")])
    code, _, err = _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "mine")
    assert code == EXIT_BAD_INPUT and str(info) in err
    assert sorted(os.listdir(out)) == ["dataset_info.json"]


def test_out_that_is_a_file_or_under_a_file_exits_2(tmp_path, images, capsys):
    src = _write(tmp_path / "src.json", [_good("a")])
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        code, _, err = _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "mine")
        assert code == EXIT_BAD_INPUT and str(afile) in err
    assert afile.read_text() == "x"


def test_unwritable_out_exits_2(tmp_path, images):
    """The real console script; root writes in read-only folders, so as root (CI) it runs with no capabilities
    (setpriv), bound like any owner by the folder's mode."""
    src = _write(tmp_path / "src.json", [_good("a")])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"] if os.geteuid() == 0 else []
    result = subprocess.run([*drop, BIN / "llava-lf", "convert", src, "--image-folder", images, "--out", locked,
                             "--name", "mine"], capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT and f"{locked}: cannot write there" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not any(locked.iterdir())


@pytest.mark.parametrize("args,says", [
    (["--workers", "0", "--verify-images"], "--workers must be positive"),
    (["--workers", "-3"], "--workers must be positive"),
    (["--max-pixels", "0"], "--max-pixels must be positive"),
    (["--image-tokens", "-1"], "--image-tokens must be positive"),
])
def test_bad_option_values_exit_2(tmp_path, images, capsys, args, says):
    src = _write(tmp_path / "src.json", [_good("a")])
    code, _, err = _cli(capsys, "check", src, "--image-folder", images, *args)
    assert code == EXIT_BAD_INPUT and says in err


def test_unusable_source_and_image_folder_exit_2(tmp_path, images, capsys):
    src = _write(tmp_path / "src.json", [_good("a")])
    code, _, err = _cli(capsys, "check", tmp_path, "--image-folder", images)
    assert code == EXIT_BAD_INPUT and "cannot be read" in err
    code, _, err = _cli(capsys, "check", src, "--image-folder", tmp_path / "nope")
    assert code == EXIT_BAD_INPUT and "--image-folder" in err and "does not exist" in err
    code, _, err = _cli(capsys, "check", src, "--image-folder", src)
    assert code == EXIT_BAD_INPUT and "is not a folder" in err


def test_a_top_level_object_is_not_an_empty_dataset(tmp_path, images, capsys):
    src = tmp_path / "wrapped.json"
    src.write_text(json.dumps({"data": [_good("a")]}, indent=2))
    for command in (["convert", "--out", tmp_path / "out", "--name", "m"], ["check"]):
        code, _, err = _cli(capsys, command[0], src, "--image-folder", images, *command[1:])
        assert code == EXIT_BAD_INPUT and "expected a JSON array of records or JSON Lines" in err
    assert not (tmp_path / "out").exists()


def test_leftovers_of_killed_runs_are_removed_by_the_next_successful_run(tmp_path, images, capsys):
    out = tmp_path / "out"
    out.mkdir()
    killed = AtomicFile(out / "mine.jsonl")  # a killed run's: its lock freed, its file left
    killed.handle.close()
    leftover = killed._tmp
    live = AtomicFile(out / "other.jsonl")  # a run still writing (its lock held)
    foreign = out / ".mine.jsonl.tmp"  # not ours by name: never touched
    foreign.write_text("half a file")
    src = _write(tmp_path / "src.json", [_good("a")])
    code, out_text, _ = _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "mine")
    assert code == EXIT_OK and f"removed {leftover.name}" in out_text
    assert not leftover.exists() and live._tmp.exists() and foreign.exists()
    live.discard()


# --- hostile records ---------------------------------------------------------------------------------------------

def _hostile_file(tmp_path: Path, images: Path, jsonl: bool) -> tuple[Path, list[tuple[int, str, str]]]:
    """A file of good records between hostile ones; returns it and (index, reason, field) per hostile record."""
    (images / "loop").symlink_to(images / "loop")
    (images / "loopdir").symlink_to(images / "loopdir", target_is_directory=True)
    good = json.dumps(_good("good-{}"))
    deep = "[" * 100_000 + "]" * 100_000
    hostile = [
        ('{"id": "nul", "image": "a.png\\u0000.jpg", "conversations": %s}', "malformed", "image"),
        ('{"id": "sur-path", "image": "a\\udc80.png", "conversations": %s}', "malformed", "image"),
        ('{"id": "long", "image": "%s.png", "conversations": %%s}' % ("n" * 10_000), "missing_image", "image"),
        ('{"id": "loop", "image": "loop", "conversations": %s}', "missing_image", "image"),
        ('{"id": "loopdir", "image": "loopdir/a.png", "conversations": %s}', "missing_image", "image"),
        ('{"id": "from-list", "conversations": [{"from": ["human"], "value": "hi"}, {"from": "gpt", "value": "x"}]}',
         "malformed", "conversations[0].from"),
        ('{"id": "from-dict", "conversations": [{"from": {"a": 1}, "value": "hi"}, {"from": "gpt", "value": "x"}]}',
         "malformed", "conversations[0].from"),
        ('{"id": "sur-value", "conversations": [{"from": "human", "value": "hi \\ud800"}, '
         '{"from": "gpt", "value": "x"}]}', "malformed", "conversations[0].value"),
        ('{"id": "sur-id-\\udfff", "image": "a.png", "conversations": %s}', "malformed", "id"),
        ('{"id": %s, "image": "a.png", "conversations": %%s}' % ("9" * 5000), "malformed", "id"),
        (deep, "malformed", "<record>"),
        ('{"id": true, "image": "a.png", "conversations": %s}', "malformed", "id"),
        ('{"id": "turn-str", "conversations": ["human: hi", "gpt: hello"]}', "malformed", "conversations[0]"),
        ('{"id": "big-extra", "image": "a.png", "conversations": %%s, "n": %s}' % ("7" * 30), None, None),
    ]
    pair = json.dumps(_pair())
    texts, expected = [], []
    for position, (template, reason, field) in enumerate(hostile):
        texts.append(good.replace("{}", str(position)))
        text = template % pair if "%s" in template else template
        if reason is not None:
            expected.append((len(texts), reason, field))
        texts.append(text)
    src = tmp_path / ("hostile.jsonl" if jsonl else "hostile.json")
    src.write_text("\n".join(texts) + "\n" if jsonl else "[\n" + ",\n".join(texts) + "\n]\n")
    return src, expected


@pytest.mark.parametrize("jsonl", [False, True])
def test_each_hostile_record_is_rejected_alone_and_kept_whole(tmp_path, images, capsys, jsonl):
    src, expected = _hostile_file(tmp_path, images, jsonl)
    before = src.read_bytes()
    out, report = tmp_path / "out", tmp_path / "check.jsonl"
    code, text, _ = _cli(capsys, "convert", src, "--image-folder", images, "--out", out, "--name", "h")
    assert code == EXIT_OK, text
    rejected = _rows(out / "h.rejected.jsonl")
    assert [(row["index"], row["reason"], row["field"]) for row in rejected] == expected
    written = _rows(out / "h.jsonl")
    total = text.split(":", 1)[1].split(" records")[0].strip()
    assert len(written) + len(rejected) == int(total) == 2 * 14
    assert sorted(row["id"] for row in written) == sorted([f"good-{n}" for n in range(14)] + ["big-extra"])
    assert src.read_bytes() == before
    by_id = {row["id"]: row for row in rejected}
    assert by_id["nul"]["record"]["image"] == "a.png\0.jpg"  # the record itself, to fix and convert again
    assert by_id["sur-value"]["record"]["conversations"][0]["value"] == "hi \ud800"
    assert by_id["sur-id-\\udfff"]["record"]["id"] == "sur-id-\udfff"
    assert "5,000 digits" in next(row["message"] for row in rejected if row["id"].startswith("99999"))
    deep_row = next(row for row in rejected if row["field"] == "<record>")
    assert "nested deeper" in deep_row["message"] and deep_row["record_text"] == "[" * 100_000 + "]" * 100_000
    # check agrees with convert, record for record
    code, _, _ = _cli(capsys, "check", src, "--image-folder", images, "--report", report)
    assert code == 1
    assert [(row["index"], row["reason"], row["field"]) for row in _rows(report)] == expected


def test_the_console_script_rejects_hostile_records_alone(tmp_path, images):
    src, expected = _hostile_file(tmp_path, images, jsonl=False)
    result = subprocess.run([str(BIN / "llava-lf"), "convert", str(src), "--image-folder", str(images), "--out",
                             str(tmp_path / "out"), "--name", "h", "--strict"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{len(expected)} rejected" in result.stdout
    assert len(_rows(tmp_path / "out" / "h.rejected.jsonl")) == len(expected)


def test_importing_the_converter_does_not_import_the_host():
    """`llava-lf convert`/`check` start in about a second: the host (torch, transformers) loads only for a cutoff."""
    code = "import sys, llava_lf.data.convert, llava_lf.cli as c; c.build_parser(); print(sorted(" \
           "m for m in ('llamafactory', 'torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.strip() == "[]"
