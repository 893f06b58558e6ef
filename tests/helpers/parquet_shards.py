"""Parquet shards in LLaVA-NeXT-Data's layout, written with pyarrow as `datasets` writes them (id, conversations
[{from, value}], data_source, image = {bytes, path}): one shard with one image struct per row (several row groups),
one with a list of them (several images per row), one with turns stored as JSON text; inline JPEG and PNG bytes,
duplicates, path-only and text-only rows, and hostile rows, each with the reason the converter must give
(`EXPECTED`, filled by `write_shards`)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24 + seed % 5, 16), (seed * 37 % 256, seed * 11 % 256, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 20 + seed % 3), (10, seed * 53 % 256, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A PNG whose header claims 40,000 x 40,000 pixels (1.6 G, over the default limit); no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def turns(question: str, answer: str, images: int = 1) -> list[dict]:
    return [{"from": "human", "value": "<image>\n" * images + question}, {"from": "gpt", "value": answer}]


# id -> (the reason it is rejected, or None when it is written)
EXPECTED: dict[str, str | None] = {}


def _single_rows(images_dir: Path) -> list[dict]:
    """Shard 1: one image struct per row (NeXT-Data's layout)."""
    rows = []

    def add(rid, conversations, image, source="coco", reason=None):
        EXPECTED[rid] = reason
        rows.append({"id": rid, "conversations": conversations, "data_source": source, "image": image})

    for n in range(12):
        add(f"jpg-{n}", turns(f"What colour is square {n}?", f"Colour {n}."), {"bytes": _jpeg(n), "path": f"{n}.jpg"})
    for n in range(4):
        add(f"png-{n}", turns(f"Describe picture {n}.", f"A bar {n}."), {"bytes": _png(n), "path": None},
            source="ocr")
    for n in range(5):  # the same bytes as jpg-0..4, under other ids: stored once
        add(f"dup-{n}", turns(f"Again, square {n}?", "The same."), {"bytes": _jpeg(n), "path": f"copy/{n}.jpg"})
    for n in range(4):
        add(f"text-{n}", [{"from": "human", "value": f"Say {n}."}, {"from": "gpt", "value": f"{n}."}], None,
            source="sharegpt")
    (images_dir / "coco").mkdir(parents=True)
    for n in range(3):  # path only: looked up under --image-folder
        (images_dir / "coco" / f"{n}.jpg").write_bytes(_jpeg(100 + n))
        add(f"path-{n}", turns("Where is it?", "Here."), {"bytes": None, "path": f"coco/{n}.jpg"}, source="vg")
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48).save(noisy, "JPEG")
    add("cut-body", turns("Cut?", "Yes."), {"bytes": noisy.getvalue()[:-500], "path": None})  # decoding finds it
    add("json-turns", json.dumps(turns("Turns stored as JSON text?", "Yes.")), {"bytes": _jpeg(50), "path": None})
    # hostile rows: each rejected alone, with its reason
    add("no-bytes", turns("Q?", "A."), {"bytes": None, "path": None}, reason="missing_image")
    add("empty-bytes", turns("Q?", "A."), {"bytes": b"", "path": None}, reason="missing_image")
    add("garbage", turns("Q?", "A."), {"bytes": os.urandom(3000), "path": "x.jpg"}, reason="image_undecodable")
    add("cut-header", turns("Q?", "A."), {"bytes": _jpeg(65)[:200], "path": None}, reason="image_undecodable")
    add("eps", turns("Q?", "A."), {"bytes": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "path": None},
        reason="image_undecodable")
    add("bomb", turns("Q?", "A."), {"bytes": _bomb_png(), "path": None}, reason="image_too_large")
    add("path-missing", turns("Q?", "A."), {"bytes": None, "path": "coco/none.jpg"}, reason="missing_image")
    add("path-escape", turns("Q?", "A."), {"bytes": None, "path": "../outside.jpg"}, reason="path_escape")
    add("no-turns", None, {"bytes": _jpeg(60), "path": None}, reason="malformed")
    add("bad-role", [{"from": "user", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}],
        {"bytes": _jpeg(61), "path": None}, reason="malformed")
    add("no-placeholder", [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}],
        {"bytes": _jpeg(62), "path": None}, reason="placeholder_count")
    add("bad-json-turns", "[{not json", {"bytes": _jpeg(63), "path": None}, reason="malformed")
    EXPECTED["jpg-0#2"] = "duplicate_id"
    rows.append({"id": "jpg-0", "conversations": turns("Q?", "A."), "data_source": "coco",
                 "image": {"bytes": _jpeg(64), "path": None}})
    return rows


def _multi_rows() -> list[dict]:
    """Shard 2: a list of image structs per row (several images per row)."""
    rows = []

    def add(rid, conversations, images, reason=None):
        EXPECTED[rid] = reason
        rows.append({"id": rid, "conversations": conversations, "data_source": "multi", "image": images})

    for n in range(3):
        add(f"two-{n}", turns(f"Compare pair {n}.", "They differ.", images=2),
            [{"bytes": _jpeg(200 + n), "path": None}, {"bytes": _png(200 + n), "path": None}])
    add("two-dup", turns("Compare again.", "Same pair.", images=2),
        [{"bytes": _jpeg(200), "path": None}, {"bytes": _jpeg(1), "path": None}])  # both stored already
    add("two-none", turns("Q?", "A.", images=2), [{"bytes": _jpeg(210), "path": None}, None],
        reason="missing_image")
    add("multi-text", [{"from": "human", "value": "Hi."}, {"from": "gpt", "value": "Hello."}], [])
    return rows


def write_shards(root: Path) -> tuple[Path, Path]:
    """The shard folder (data/train-0000{0,1}-of-00002.parquet) and the image folder for path-only rows."""
    EXPECTED.clear()
    data, images = root / "data", root / "images"
    data.mkdir(parents=True)
    single = pa.schema([("id", pa.string()), ("conversations", pa.list_(TURN)), ("data_source", pa.string()),
                        ("image", IMAGE)])
    rows = _single_rows(images)
    as_text = {"json-turns", "bad-json-turns"}  # turns stored as JSON text: a third shard, typed so
    listed = [row for row in rows if row["id"] not in as_text]
    pq.write_table(pa.Table.from_pylist(listed, schema=single), data / "train-00000-of-00003.parquet",
                   row_group_size=7)  # several row groups
    multi = pa.schema([("id", pa.string()), ("conversations", pa.list_(TURN)), ("data_source", pa.string()),
                       ("image", pa.list_(IMAGE))])
    pq.write_table(pa.Table.from_pylist(_multi_rows(), schema=multi), data / "train-00001-of-00003.parquet")
    text = pa.schema([("id", pa.string()), ("conversations", pa.string()), ("data_source", pa.string()),
                      ("image", IMAGE)])
    pq.write_table(pa.Table.from_pylist([row for row in rows if row["id"] in as_text], schema=text),
                   data / "train-00002-of-00003.parquet")
    return data, images
