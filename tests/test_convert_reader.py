"""The streaming reader: same values as json.loads across chunk boundaries, flat memory, errors with line/column."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from llava_lf.data.convert import reader
from llava_lf.data.convert.reader import iter_records
from llava_lf.errors import LlavaLfError


def _records(n: int, seed: int = 0) -> list[object]:
    rng = random.Random(seed)
    values = ["plain", "é ü 漢字 🙂", 'quote " backslash \\ tab \t', "\u2028", "<image>\nQ"]
    out: list[object] = []
    for i in range(n):
        out.append({"id": i, "text": rng.choice(values) * rng.randint(0, 30), "n": rng.choice([0, -7, 1.5e-9, 12345678901234567890]),
                    "flags": [True, False, None], "nested": {"a": [[], {}], "b": rng.random()}})
    return out + [42, "a bare string", [1, 2]]  # non-objects are records too (the validator rejects them)


@pytest.mark.parametrize("layout", ["indented", "compact", "jsonl"])
def test_values_match_json_loads_across_tiny_chunks(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(reader, "CHUNK_CHARS", 5)  # every value straddles chunk boundaries
    records = _records(60)
    path = tmp_path / "data.json"
    text = {"indented": json.dumps(records, indent=3, ensure_ascii=False), "compact": json.dumps(records),
            "jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"}[layout]
    path.write_text(text, encoding="utf-8")
    parsed = list(iter_records(path))
    assert [record.value for record in parsed] == records
    assert [record.index for record in parsed] == list(range(len(records)))
    lines = text.split("\n")  # (splitlines would also split at U+2028)
    for record in parsed:  # each record's reported line holds its first character
        expected = json.dumps(record.value, ensure_ascii=False)[:1]
        assert expected in lines[record.line - 1], (record.index, record.line)


def test_byte_order_mark_and_empty_array(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes("\ufeff[ {\"id\": 1} ]".encode("utf-8"))
    assert [r.value for r in iter_records(path)] == [{"id": 1}]
    path.write_text(" [ \n ] \n")
    assert list(iter_records(path)) == []


@pytest.mark.parametrize(("text", "line", "column", "says"), [
    ('[{"a": 1},\n {"b": 2}\n {"c": 3}]', 3, 2, "expected ',' or ']' after record 1"),
    ('[\n  {"a": 1},\n  {"b": tru}\n]', 3, 9, "not valid JSON"),
    ('[{"a": 1},\n]', 2, 1, "a comma after the last record"),  # points at the ']'
    ('[{"a": 1}', 1, 10, "found the end of the file"),
    ('[{"a": "cut off', 1, 8, "is it truncated?"),
    ('[{"a": 1}] extra', 1, 12, "after the closing ']'"),
    ('{"a": 1}\n{"b": [1,}\n', 2, 10, "not valid JSON"),
    ("id,image\n1,a.jpg\n", 1, 1, "expected '[' (a JSON array of records) or '{' (JSON Lines)"),
    ("   \n", 2, 1, "the file is empty"),  # the end of the file
])
def test_syntax_errors_name_line_and_column(tmp_path, monkeypatch, text, line, column, says):
    monkeypatch.setattr(reader, "CHUNK_CHARS", 4)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LlavaLfError) as caught:
        list(iter_records(path))
    assert f"bad.json: line {line}, column {column}: " in str(caught.value) and says in str(caught.value)


def test_invalid_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"a": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(LlavaLfError, match="not UTF-8"):
        list(iter_records(path))


def test_memory_stays_flat_as_the_file_grows(tmp_path):
    """Peak Python allocation while streaming is a few chunks, whether the file is 1.4 MB or 11 MB."""
    record = {"id": "x", "image": "coco/train2017/000000033471.jpg",
              "conversations": [{"from": "human", "value": "<image>\nWhat is shown? " * 10},
                                {"from": "gpt", "value": "A bus. " * 80}] * 3}
    line = json.dumps(record, indent=2)
    peaks = []
    for copies in (500, 4000):
        path = tmp_path / f"big{copies}.json"
        path.write_text("[" + ",\n".join([line] * copies) + "]")
        tracemalloc.start()
        count = sum(1 for _ in iter_records(path))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == copies
    size = path.stat().st_size
    assert size > 10 << 20
    assert peaks[1] < 4 * reader.CHUNK_CHARS * 4 + (1 << 20), peaks  # a few chunks (up to 4 bytes a char)
    assert peaks[1] < 1.5 * peaks[0] + (1 << 20), peaks  # eight times the file, not eight times the memory
