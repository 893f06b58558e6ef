"""Benchmark: samples/s of LLaVA-NeXT preprocessing, `llava_v1` + our `llava_lf` plugin vs the host's `llava_next`.

The NeXT twin of preprocess_throughput.py (same loader, same samples for both, chunks alternated, wall and CPU
time): both run through the host's `llamafactory.data.loader._get_preprocessed_dataset` on a LLaVA-NeXT processor
with the 1.6 settings (CLIP-L/14-336 tiles, the five 1.6 grids 1x2, 2x1, 2x2, 1x3, 3x1, "default" feature
selection). The host's `llava_next` plugin opens, downscales (over 768*768 pixels) and runs the full AnyRes image
processor on every image to count its tokens; ours reads each file's header and computes the count after the same
resize. Target: >= 50x, and every sample gets the same number of image tokens from both (checked, else it exits).

    .venv/bin/python benchmarks/preprocess_next_throughput.py                     # 1,000 samples
    .venv/bin/python benchmarks/preprocess_next_throughput.py --samples 500 --out runs/bench/preprocess_next

Data, all generated: photo-like JPEGs (smooth colour fields plus grain) in five sizes, cycled: 640x480, 1024x768,
1920x1080, 500x1000 and 300x200 (from 1,464 to 2,340 image tokens each); the conversations, tokenizer and
Llama text config of preprocess_throughput.py; a `LlavaNextProcessor` and `LlavaNextConfig` built from config.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from preprocess_throughput import (  # noqa: E402  the sibling script's data and clocks
    CLIP_MEAN,
    CLIP_STD,
    Variant,
    build_model_folder,
    make_samples,
    processor_timed,
    ratio,
)

SIZES = ((640, 480), (1024, 768), (1920, 1080), (500, 1000), (300, 200))  # (width, height)
TILE, PATCH = 336, 14


def write_images(folder: Path, count: int, seed: int) -> list[str]:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in tqdm(range(count), desc="writing JPEGs of mixed sizes", unit="image"):
        width, height = SIZES[index % len(SIZES)]
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-24, 25, size=smooth.shape, dtype=np.int16)
        path = folder / f"{index:06d}_{width}x{height}.jpg"
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def build_next_model_folder(folder: Path, seed: int) -> Path:
    """Tokenizer + a 1.6 `LlavaNextProcessor` (CLIP-L/14-336 tiles) + a `LlavaNextConfig` (no weights)."""
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        LlavaNextConfig,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    from llava_lf.common.anyres import NEXT_GRIDS, grid_pinpoints
    from llava_lf.formats import LLAVA_V1_CHAT_TEMPLATE

    base = build_model_folder(folder.parent / f"{folder.name}_base", seed)  # the 1.5 benchmark's tokenizer and tower
    tokenizer = AutoTokenizer.from_pretrained(base)
    pinpoints = grid_pinpoints(NEXT_GRIDS, TILE)
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                                              image_grid_pinpoints=pinpoints, image_mean=CLIP_MEAN,
                                              image_std=CLIP_STD)
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       chat_template=LLAVA_V1_CHAT_TEMPLATE).save_pretrained(folder)
    llava = AutoConfig.from_pretrained(base)
    LlavaNextConfig(vision_config=llava.vision_config.to_dict(), text_config=llava.text_config.to_dict(),
                    image_token_id=llava.image_token_id, image_grid_pinpoints=pinpoints,
                    vision_feature_select_strategy="default", vision_feature_layer=-2).save_pretrained(folder)
    return folder


@dataclass
class NextVariant(Variant):
    """A `Variant` that keeps each sample's image-token count (NeXT counts vary with the image's size)."""

    counts: list[int] = field(default_factory=list)

    def run(self, chunk) -> None:
        from llamafactory.data import loader

        with self.step.running(), contextlib.redirect_stdout(io.StringIO()):  # the host prints one example per call
            dataset = loader._get_preprocessed_dataset(chunk, self.data_args, self.training_args, "sft", self.template,
                                                       self.tokenizer, self.processor)
        counts = [ids.count(self.image_id) for ids in dataset["input_ids"]]
        self.rows += len(counts)
        self.image_tokens += sum(counts)
        self.counts.extend(counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=250, help="rows per call of the host's preprocessing")
    parser.add_argument("--cutoff-len", type=int, default=4096,
                        help="above the largest sample (2,340 image tokens + text), so no sample is trimmed")
    parser.add_argument("--out", type=Path, default=None, help="keep data and results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="threads for the host's torch image processing (what each preprocessing worker gets)")
    args = parser.parse_args(argv)
    import torch
    from tqdm import tqdm

    import datasets

    torch.set_num_threads(args.torch_threads)
    datasets.disable_progress_bars()
    out = args.out or Path(tempfile.mkdtemp(prefix="preprocess_next_bench_"))
    out.mkdir(parents=True, exist_ok=True)

    images = write_images(out / "images", args.samples, args.seed)
    model = build_next_model_folder(out / "model", args.seed)
    rows = make_samples(images, args.seed)
    chunks = [datasets.Dataset.from_dict({key: value[start : start + args.chunk] for key, value in rows.items()})
              for start in range(0, args.samples, args.chunk)]

    ours, host = NextVariant("llava_v1", model, out / "runs"), NextVariant("llava_next", model, out / "runs")
    for variant in (ours, host):
        variant.data_args.cutoff_len = args.cutoff_len
    current = [""]
    with processor_timed({"llava_v1": ours.processing, "llava_next": host.processing}, current):
        for chunk in tqdm(chunks, desc="preprocessing", unit="chunk"):  # alternated: both see the same load
            for variant in (ours, host):
                current[0] = variant.template_name
                variant.run(chunk)

    differ = [(Path(images[i]).name, mine, theirs) for i, (mine, theirs) in enumerate(zip(ours.counts, host.counts))
              if mine != theirs]
    if differ or not len(ours.counts) == len(host.counts) == args.samples:
        raise SystemExit(f"image tokens differ from the host's llava_next on {len(differ)} samples, e.g. {differ[:5]} "
                         f"(rows: ours {len(ours.counts)}, host {len(host.counts)}, samples {args.samples})")
    print(f"samples: {args.samples}, JPEGs of {len(SIZES)} sizes, image tokens per sample {sorted(set(ours.counts))} "
          f"(equal to the host's for every sample), chunks of {args.chunk}, torch threads {args.torch_threads}")
    for part, title in (("processing", "per-sample work (the host's SFT processor: template, plugin, tokenising)"),
                        ("step", "the loader step end to end (the same + datasets' Arrow writing)")):
        print(title)
        for name, variant in (("host `llava_next` + its plugin", host), ("`llava_v1` + `llava_lf` plugin", ours)):
            clock = getattr(variant, part)
            print(f"  {name:<32} {variant.rows / clock.wall:>8,.0f} samples/s wall ({clock.wall:.2f} s), "
                  f"{variant.rows / clock.cpu:>8,.0f} per CPU-second ({variant.plugin}, {variant.rows} rows)")
    print(f"ratio: {ratio(host, ours, 'processing', 'wall'):.1f}x wall, {ratio(host, ours, 'processing', 'cpu'):.1f}x "
          "CPU time (per-sample work; target >= 50x)")
    print(f"loader step ratio: {ratio(host, ours, 'step', 'wall'):.1f}x wall, {ratio(host, ours, 'step', 'cpu'):.1f}x "
          "CPU time")
    figures = {name: {**variant.figures(), "counts": variant.counts} for name, variant in (("ours", ours),
                                                                                          ("host", host))}
    (out / "preprocess_next_throughput.json").write_text(json.dumps({
        "samples": args.samples, "chunk": args.chunk, "torch_threads": args.torch_threads, "sizes": SIZES,
        "images": [Path(path).name for path in images],
        "ratio": {part: {clock: ratio(host, ours, part, clock) for clock in ("wall", "cpu")}
                  for part in ("processing", "step")}, **figures}, indent=2))
    print(f"results: {out / 'preprocess_next_throughput.json'}")


if __name__ == "__main__":
    main()
