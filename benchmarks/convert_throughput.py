"""Benchmark: records/s and peak RSS of `llava-lf convert` on generated mix665k-shaped files.

Targets: >= 20,000 records/s without image verification, peak RSS under 300 MB, and RSS
independent of the file size (compare the two sizes). Each conversion runs in its own subprocess; its
peak RSS is read from `os.wait4`'s resource usage for that child alone.

    .venv/bin/python benchmarks/convert_throughput.py              # 100K and 665,298 records
    .venv/bin/python benchmarks/convert_throughput.py --sizes 20000 --keep runs/bench/data

The generated file follows mix665k's published composition (COCO 364,100, VG 86,417, GQA 72,140,
OCR-VQA 80,000, TextVQA 21,953, text-only 40,688; about 6% text-only) with LLaVA-like turn counts and
lengths (about 1.5 KB per record, so 665K records make about a 1 GB JSON array). Image files are empty
placeholders in the conventional folders: without --verify-images only their existence is checked.
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

BIN = Path(sys.executable).parent
MIX665K = {"coco": 364_100, "vg": 86_417, "gqa": 72_140, "ocr_vqa": 80_000, "textvqa": 21_953, "text": 40_688}
IMAGE_POOLS = {  # folder -> distinct placeholder files (smaller than the real sets; reuse is realistic)
    "coco/train2017": 20_000, "vg/VG_100K": 6_000, "vg/VG_100K_2": 4_000, "gqa/images": 15_000,
    "ocr_vqa/images": 15_000, "textvqa/train_images": 5_000,
}
SHORT_PROMPT = "Answer the question using a single word or phrase."
WORDS = ["the", "a", "of", "and", "to", "in", "is", "on", "with", "what", "color", "man", "woman", "table", "dog", "cat", "sign", "red", "blue", "green", "white", "black", "left", "right", "person", "standing", "sitting", "holding", "wearing", "building", "street", "car", "train", "bus", "sky", "tree", "water", "picture", "image", "shows", "near", "behind", "front", "large", "small", "two", "three", "several", "people", "kitchen", "room", "window", "describe", "detail", "scene", "object", "background", "reason", "because", "likely", "appears"]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=max(1, n_words)))


def _pairs(rng: random.Random, n: int, question: tuple[int, int], answer: tuple[int, int]) -> list[dict]:
    turns = []
    for _ in range(n):
        turns.append({"from": "human", "value": _text(rng, rng.randint(*question)) + "?"})
        turns.append({"from": "gpt", "value": _text(rng, rng.randint(*answer)) + "."})
    return turns


def _image_record(rng: random.Random, source: str, index: int, pools: dict[str, int]) -> dict:
    if source == "coco" and rng.random() < 0.45:  # llava_instruct: conversation / detail / complex reasoning
        turns = _pairs(rng, rng.choice((1, 1, 2, 3, 4)), (6, 16), (40, 110))
    elif source == "coco":  # VQAv2 / OKVQA / A-OKVQA / RefCOCO: many short turns
        turns = _pairs(rng, rng.randint(3, 10), (5, 10), (1, 3))
        for turn in turns[::2]:
            turn["value"] += "\n" + SHORT_PROMPT
    elif source in ("vg", "gqa"):
        turns = _pairs(rng, rng.randint(4, 14), (5, 12), (1, 6))
    elif source == "ocr_vqa":
        turns = _pairs(rng, rng.randint(3, 8), (5, 9), (1, 5))
    else:  # textvqa: one reference-OCR question
        turns = _pairs(rng, 1, (20, 40), (1, 3))
    first = turns[0]
    first["value"] = f"{first['value']}\n<image>" if rng.random() < 0.1 else f"<image>\n{first['value']}"
    folders = [f for f in pools if f.startswith(source + "/")]
    folder = rng.choice(folders)
    image = f"{folder}/{rng.randrange(pools[folder]):012d}.jpg"
    return {"id": f"{source}-{index}", "image": image, "conversations": turns}


def _text_record(rng: random.Random, index: int) -> dict:  # ShareGPT rows: long multi-turn, no image
    return {"id": f"sharegpt-{index}", "model": "", "conversations": _pairs(rng, rng.randint(1, 5), (10, 60), (60, 260))}


def image_pools(cap: int | None = None) -> dict[str, int]:
    """Placeholder files per image folder: IMAGE_POOLS, or at most `cap` each (a smoke run's few files)."""
    return {folder: min(count, cap or count) for folder, count in IMAGE_POOLS.items()}


def write_mix(path: Path, n_records: int, seed: int = 0, pools: dict[str, int] = IMAGE_POOLS) -> None:
    rng = random.Random(seed)
    sources = [name for name, count in MIX665K.items() for _ in range(count)]
    rng.shuffle(sources)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        for index in range(n_records):
            source = sources[index % len(sources)]
            record = _text_record(rng, index) if source == "text" else _image_record(rng, source, index, pools)
            handle.write(("" if index == 0 else ",\n") + json.dumps(record, indent=4))
        handle.write("\n]\n")


def write_image_folder(root: Path, pools: dict[str, int] = IMAGE_POOLS) -> None:
    for folder, count in pools.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            (root / folder / f"{number:012d}.jpg").touch()


def measure(src: Path, images: Path, out: Path, extra: list[str]) -> dict:
    command = [str(BIN / "llava-lf"), "convert", str(src), "--image-folder", str(images), "--out", str(out),
               "--name", src.stem, *extra]
    errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: nobody reads it while the run goes on
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    samples = []  # (seconds, RSS MB) every 0.1 s, for the chart
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # on exit: this child's own peak RSS
        if pid:
            break
        samples.append((time.perf_counter() - started, _rss_mb(process.pid)))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = process.stdout.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        errors.seek(0)
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}{errors.read()[-3000:]}")
    total = int(output.split(": ", 1)[1].split(" records", 1)[0])
    cpu = usage.ru_utime + usage.ru_stime
    return {"records": total, "seconds": seconds, "records_per_s": total / seconds, "cpu_s": cpu,
            "records_per_cpu_s": total / cpu, "peak_rss_mb": usage.ru_maxrss / 1024,
            "file_mb": src.stat().st_size / 1e6, "summary": output.strip(), "samples": samples}


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    kilobytes = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "nan")
    return float(kilobytes) / 1024


def plot(results: list[dict], path: Path) -> None:
    """RSS over the run, against the share of the file converted: flat lines mean memory independent of size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for result in results:
        if result["samples"]:
            xs = [t / result["seconds"] for t, _ in result["samples"]]
            axis.plot(xs, [mb for _, mb in result["samples"]],
                      label=f"{result['records']:,} records ({result['file_mb']:,.0f} MB): "
                            f"{result['records_per_s']:,.0f} records/s, peak {result['peak_rss_mb']:.0f} MB")
    axis.set(xlabel="share of the run", ylabel="RSS (MB)", ylim=(0, None),
             title="llava-lf convert on mix665k-shaped files: memory stays flat")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, sum(MIX665K.values())])
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the files")
    parser.add_argument("--chart", type=Path, default=Path("runs/bench/convert_throughput.png"))
    parser.add_argument("--pool-cap", type=int, default=None,
                        help="at most this many placeholder images per folder (default: IMAGE_POOLS, 65,000 files)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `llava-lf convert` options")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pools = image_pools(args.pool_cap)
    try:
        images = work / "images"
        if not images.is_dir():
            write_image_folder(images, pools)
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work slows wall time; "
              "CPU time is the converter's own)")
        print(f"{'records':>9} {'file MB':>8} {'wall s':>7} {'records/s':>10} {'CPU s':>6} {'records/CPU-s':>14} "
              f"{'peak RSS MB':>12}")
        results = []
        for size in args.sizes:
            src = work / f"mix_{size}.json"
            if not src.is_file():
                write_mix(src, size, pools=pools)
            result = measure(src, images, work / "datasets", args.extra)
            results.append(result)
            print(f"{result['records']:>9,} {result['file_mb']:>8.0f} {result['seconds']:>7.1f} "
                  f"{result['records_per_s']:>10,.0f} {result['cpu_s']:>6.1f} {result['records_per_cpu_s']:>14,.0f} "
                  f"{result['peak_rss_mb']:>12.0f}", flush=True)
        print("\nlast summary:\n" + result["summary"])
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        plot(results, args.chart)
        print(f"chart: {args.chart}")
        if args.json is not None:
            rows = [{key: value for key, value in result.items() if key != "samples"} for result in results]
            args.json.write_text(json.dumps({"runs": rows}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
