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
    chunked,
    make_samples,
    print_figures,
    ratios,
    run_alternated,
    write_images,
)

SIZES = ((640, 480), (1024, 768), (1920, 1080), (500, 1000), (300, 200))  # (width, height)
TILE, PATCH = 336, 14


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

    def check(self, counts: list[int]) -> None:
        """Kept, to be compared with the host's sample by sample once both have run."""
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

    import datasets

    torch.set_num_threads(args.torch_threads)
    datasets.disable_progress_bars()
    out = args.out or Path(tempfile.mkdtemp(prefix="preprocess_next_bench_"))
    out.mkdir(parents=True, exist_ok=True)

    images = write_images(out / "images", args.samples, args.seed, sizes=SIZES, coarse=(6, 8),
                          name="{index:06d}_{width}x{height}.jpg", desc="writing JPEGs of mixed sizes")
    model = build_next_model_folder(out / "model", args.seed)
    chunks = chunked(make_samples(images, args.seed), args.samples, args.chunk)

    ours, host = NextVariant("llava_v1", model, out / "runs"), NextVariant("llava_next", model, out / "runs")
    for variant in (ours, host):
        variant.data_args.cutoff_len = args.cutoff_len
    run_alternated(chunks, ours, host)  # alternated: both see the same load

    differ = [(Path(images[i]).name, mine, theirs) for i, (mine, theirs) in enumerate(zip(ours.counts, host.counts))
              if mine != theirs]
    if differ or not len(ours.counts) == len(host.counts) == args.samples:
        raise SystemExit(f"image tokens differ from the host's llava_next on {len(differ)} samples, e.g. {differ[:5]} "
                         f"(rows: ours {len(ours.counts)}, host {len(host.counts)}, samples {args.samples})")
    print(f"samples: {args.samples}, JPEGs of {len(SIZES)} sizes, image tokens per sample {sorted(set(ours.counts))} "
          f"(equal to the host's for every sample), chunks of {args.chunk}, torch threads {args.torch_threads}")
    print_figures(host, ours, "host `llava_next` + its plugin", target=50)
    figures = {name: {**variant.figures(), "counts": variant.counts} for name, variant in (("ours", ours),
                                                                                          ("host", host))}
    (out / "preprocess_next_throughput.json").write_text(json.dumps({
        "samples": args.samples, "chunk": args.chunk, "torch_threads": args.torch_threads, "sizes": SIZES,
        "images": [Path(path).name for path in images],
        "ratio": ratios(host, ours), **figures}, indent=2))
    print(f"results: {out / 'preprocess_next_throughput.json'}")


if __name__ == "__main__":
    main()
