"""Benchmark: records/s and peak RSS of `llava-lf inspect` on a generated mix665k-shaped file, and image headers/s.

Targets: >= 20,000 records/s wall without images and tokenizer, peak RSS under 400 MB; image
headers >= 2,000 images/s. Each run is its own subprocess (one process: DuckDB's threads are inside it); its
peak RSS and CPU seconds are read from `os.wait4`'s resource usage for that child. Each card is checked
against the file: records, image records, sources and questions counted here with the converter's reader,
no duplicates and no rejections (the generator writes none); a card that disagrees fails the run.

    .venv/bin/python benchmarks/inspect_throughput.py                 # 100K and 665,298 records, 5,000 images
    .venv/bin/python benchmarks/inspect_throughput.py --sizes 2000 --images 200   # a smoke run

The records come from `convert_throughput.write_mix` (mix665k's published composition). The image run
writes `--images` real JPEGs and PNGs of LLaVA-like sizes (noise, so they are not tiny) and a file whose
records use each once, then inspects it with `--image-folder` (headers only, no decode).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_throughput import MIX665K, write_mix

from llava_lf.data.convert.reader import iter_records

BIN = Path(sys.executable).parent
SIZES = ((640, 480), (500, 375), (480, 640), (640, 427), (336, 336), (1024, 768))


def run_inspect(src: Path, out: Path, extra: list[str]) -> dict:
    """One `llava-lf inspect` subprocess: wall and CPU seconds, its own peak RSS, and the card it wrote."""
    command = [str(BIN / "llava-lf"), "inspect", str(src), "--out", str(out), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stdout}\n{stderr}")
    card = json.loads((out / "card.json").read_text())["datasets"][0]
    return {"records": card["composition"]["records"], "seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "file_mb": src.stat().st_size / 1e6, "card": card}


def file_composition(src: Path) -> dict:
    """What the card must say about a generated file, counted from the file itself."""
    sources: dict[str, int] = {}
    records = with_image = questions = 0
    for source in iter_records(src):
        record = source.value
        records += 1
        with_image += "image" in record
        questions += len(record["conversations"]) // 2
        name = record["image"].split("/")[0] if "image" in record else record["id"].split("-")[0]
        sources[name] = sources.get(name, 0) + 1
    return {"records": records, "with_image": with_image, "questions": questions, "sources": sources}


def check_card(card: dict, expected: dict) -> None:
    got = {"records": card["composition"]["records"], "with_image": card["composition"]["with_image"],
           "questions": card["diversity"]["questions"], "sources": card["composition"]["sources"]}
    problems = [f"{key}: card {got[key]!r}, file {expected[key]!r}" for key in expected if got[key] != expected[key]]
    problems += [f"{key}: {card[part][key]} (the generator writes none)" for part, key in (
        ("diversity", "exact_duplicate_records"), ("problems", "rejected")) if card[part][key]]
    if problems:
        raise SystemExit(f"the card of {card['path']} disagrees with the file: " + "; ".join(problems))


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` images (JPEG and PNG, LLaVA-like sizes) and a LLaVA file whose records use each once."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        width, height = SIZES[index % len(SIZES)]
        name = f"{index:06d}." + ("png" if index % 5 == 0 else "jpg")
        if not (folder / name).exists():
            small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)  # blocky noise: photo-sized files
            Image.fromarray(small).resize((width, height)).save(folder / name)
        records.append({"id": str(index), "image": name,
                        "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                          {"from": "gpt", "value": "Noise."}]})
    src = folder.parent / f"images_{count}.json"
    src.write_text(json.dumps(records))
    return src


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, sum(MIX665K.values())])
    parser.add_argument("--images", type=int, default=5_000, help="images for the header run (0: skip it)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the files")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="inspect-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"load_average": os.getloadavg()[0], "cpus": os.cpu_count(), "records": [], "images": None}
    try:
        print(f"load average before: {results['load_average']:.1f} on {results['cpus']} CPUs")
        print(f"{'records':>9} {'file MB':>8} {'wall s':>7} {'records/s':>10} {'CPU s':>6} {'records/CPU-s':>14} "
              f"{'peak RSS MB':>12}")
        for size in args.sizes:
            src = work / f"mix_{size}.json"
            if not src.is_file():
                write_mix(src, size)
            row = run_inspect(src, work / f"card_{size}", [])
            check_card(row.pop("card"), file_composition(src))
            row |= {"records_per_s": row["records"] / row["seconds"], "records_per_cpu_s": row["records"] / row["cpu_s"]}
            results["records"].append(row)
            print(f"{row['records']:>9,} {row['file_mb']:>8.0f} {row['seconds']:>7.1f} {row['records_per_s']:>10,.0f} "
                  f"{row['cpu_s']:>6.1f} {row['records_per_cpu_s']:>14,.0f} {row['peak_rss_mb']:>12.0f}", flush=True)
        if args.images:
            folder = work / "images"
            src = write_images(folder, args.images)
            bare = run_inspect(src, work / "card_images_off", ["--image-folder", str(folder), "--no-image-headers"])
            headers = run_inspect(src, work / "card_images", ["--image-folder", str(folder)])
            # The same run with and without headers: the difference is the header reading alone.
            extra = max(headers["seconds"] - bare["seconds"], 1e-9)
            read = headers["card"]["images"]["width"]["count"]
            if read != args.images or bare["card"]["images"]["distinct"] != args.images:
                raise SystemExit(f"{read} image headers read of {args.images} images")
            results["images"] = {"images": read, "seconds_with": headers["seconds"], "seconds_without": bare["seconds"],
                                 "images_per_s": read / extra, "peak_rss_mb": headers["peak_rss_mb"]}
            print(f"image headers: {read:,} images in {extra:.2f} s over the run without them = "
                  f"{read / extra:,.0f} images/s (peak RSS {headers['peak_rss_mb']:.0f} MB)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    random.seed(0)
    main()
