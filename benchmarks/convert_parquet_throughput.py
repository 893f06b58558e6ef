"""Benchmark: rows/s and peak RSS of `llava-lf convert` on generated parquet shards in LLaVA-NeXT-Data's layout.

Targets: >= 2,000 rows/s with ~100 KB JPEGs on 2 CPUs, peak RSS under 500 MB whatever the shard size. The
conversion runs in its own subprocess; its peak RSS is read from `os.wait4`'s resource usage for that child alone.

    .venv/bin/python benchmarks/convert_parquet_throughput.py                 # 50,000 rows in 4 shards
    .venv/bin/python benchmarks/convert_parquet_throughput.py --rows 20000 --row-group 20000   # one big row group

The shards are written as `datasets` writes an image dataset (100 rows per row group, snappy): id,
conversations [{from, value}] (one to four turn pairs), data_source (NeXT-Data's mix of names), image
{bytes, path}. Images are one ~100 KB JPEG made unique per row by a comment segment carrying the row number
(a valid JPEG, a distinct SHA-256); `--duplicates` of the image rows repeat an earlier row's bytes and
`--text-only` have no image, as in the real set. Disk: about rows x 100 KB twice (shards and stored images).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SOURCES = ["llava_instruct", "sharegpt4v", "vqav2", "gqa", "docvqa", "chartqa", "ai2d", "dvqa", "synthdog", "lvis"]
WORDS = ["the", "a", "of", "image", "what", "color", "chart", "shows", "left", "right", "value", "text", "table",
         "how", "many", "people", "describe", "detail", "sign", "number", "answer", "question", "page", "title"]


def base_jpeg(kilobytes: int) -> bytes:
    """A noisy JPEG of about `kilobytes` KB (noise does not compress, so the size follows the pixel count)."""
    from PIL import Image

    side = 64
    while True:
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), random.Random(side).randbytes(side * side * 3)).save(buffer, "JPEG",
                                                                                                  quality=85)
        if buffer.tell() >= kilobytes * 1000:
            return buffer.getvalue()
        side += 16


def unique_jpeg(base: bytes, number: int) -> bytes:
    """`base` with a COM segment naming `number` after its SOI marker: still a valid JPEG, other bytes."""
    payload = f"row {number}".encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + base[2:]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def write_shards(folder: Path, rows: int, shards: int, row_group: int, kilobytes: int, duplicates: float,
                 text_only: float, seed: int = 0) -> dict:
    """The shard files, streamed a row group at a time; returns what a conversion must find."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    schema = pa.schema([("id", pa.string()), ("conversations", pa.list_(turn)), ("data_source", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    rng, base = random.Random(seed), base_jpeg(kilobytes)
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = -(-rows // shards)
    distinct = image_rows = index = 0
    for shard in range(shards):
        count = min(per_shard, rows - index)
        with pq.ParquetWriter(folder / f"train-{shard:05d}-of-{shards:05d}.parquet", schema) as writer:
            for start in range(0, count, row_group):
                batch = []
                for _ in range(min(row_group, count - start)):
                    pairs = rng.choice((1, 1, 2, 3, 4))
                    turns = [{"from": role, "value": _text(rng, rng.randint(4, 40))}
                             for _ in range(pairs) for role in ("human", "gpt")]
                    image = None
                    if rng.random() >= text_only:
                        image_rows += 1
                        turns[0]["value"] = "<image>\n" + turns[0]["value"]
                        number = rng.randrange(distinct) if distinct and rng.random() < duplicates else distinct
                        distinct += number == distinct
                        image = {"bytes": unique_jpeg(base, number), "path": f"{number:012d}.jpg"}
                    batch.append({"id": f"row-{index}", "conversations": turns, "data_source": rng.choice(SOURCES),
                                  "image": image})
                    index += 1
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema), row_group_size=row_group)
    return {"rows": rows, "image_rows": image_rows, "distinct_images": distinct, "image_bytes": len(base)}


def measure(shards: Path, out: Path) -> dict:
    command = [str(BIN / "llava-lf"), "convert", str(shards / "train-*.parquet"), "--out", str(out), "--name", "next"]
    errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: nobody reads it while the run goes on
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS and CPU time
    seconds = time.perf_counter() - started
    output = process.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        errors.seek(0)
        raise SystemExit(f"{' '.join(command)} failed:\n{output}{errors.read()[-3000:]}")
    total = int(output.split(": ", 1)[1].split(" records", 1)[0])
    cpu = usage.ru_utime + usage.ru_stime
    return {"rows": total, "seconds": seconds, "rows_per_s": total / seconds, "cpu_s": cpu,
            "rows_per_cpu_s": total / cpu, "peak_rss_mb": usage.ru_maxrss / 1024, "summary": output.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--row-group", type=int, default=100, help="rows per row group (datasets writes 100)")
    parser.add_argument("--image-kb", type=int, default=100, help="size of each JPEG")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of image rows repeating an image")
    parser.add_argument("--text-only", type=float, default=0.05, help="share of rows without an image")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the files")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="convert-parquet-bench-"))
    try:
        started = time.perf_counter()
        made = write_shards(work / "data", args.rows, args.shards, args.row_group, args.image_kb, args.duplicates,
                            args.text_only)
        size = sum(path.stat().st_size for path in (work / "data").iterdir()) / 1e6
        print(f"generated {args.rows:,} rows in {args.shards} shards ({size:,.0f} MB, {made['distinct_images']:,} "
              f"distinct {made['image_bytes'] / 1000:.0f} KB JPEGs) in {time.perf_counter() - started:.0f} s")
        shutil.rmtree(work / "datasets", ignore_errors=True)
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work slows wall time; "
              "CPU time is the converter's own)")
        result = measure(work / "data", work / "datasets")
        print(f"{'rows':>8} {'wall s':>7} {'rows/s':>8} {'MB/s':>6} {'CPU s':>6} {'rows/CPU-s':>11} {'peak RSS MB':>12}")
        print(f"{result['rows']:>8,} {result['seconds']:>7.1f} {result['rows_per_s']:>8,.0f} "
              f"{size / result['seconds']:>6.0f} {result['cpu_s']:>6.1f} {result['rows_per_cpu_s']:>11,.0f} "
              f"{result['peak_rss_mb']:>12.0f}")
        print("\nsummary:\n" + result["summary"])
        if args.json is not None:
            args.json.write_text(json.dumps({**made, **result, "shard_mb": size}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
