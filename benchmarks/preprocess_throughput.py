"""Benchmark: samples/s of multimodal preprocessing, `llava_v1` + our `llava_lf` plugin vs the host's `llava`.

Both run the host's own SFT preprocessing (`SupervisedDatasetProcessor.preprocess_dataset`: template,
image-token expansion, tokenisation, cutoff) on the same LLaVA-format samples, in this one process,
alternating chunk by chunk so both see the same load; wall and CPU time are both reported. Target (issue 4): >= 20x, because our plugin reads the 576-token count from the processor
configuration instead of decoding and CLIP-processing every image, and tokenises each 576-token run once.

    .venv/bin/python benchmarks/preprocess_throughput.py                     # 5,000 samples
    .venv/bin/python benchmarks/preprocess_throughput.py --samples 1000 --out runs/bench/preprocess

Data, all generated: 336 px photo-like JPEGs (smooth colour fields plus grain, so they decode like photos;
one per sample), LLaVA-Instruct-like conversations (1-3 turns, `<image>\\n` first), a LLaMA-style BPE
tokenizer (8,000 words, Metaspace) with `<image>`, and a CLIP-L/14-336 `LlavaProcessor` built from config
(shortest edge 336, centre crop 336, patch 14, CLS dropped: 576 tokens), loaded through the host's loader.
The host's CLIP processing gets one torch thread by default (`--torch-threads`).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WORDS = ["the", "a", "of", "and", "to", "in", "is", "on", "with", "what", "color", "man", "woman", "table", "dog", "cat", "sign", "red", "blue", "green", "white", "black", "left", "right", "person", "standing", "sitting", "holding", "wearing", "building", "street", "car", "train", "bus", "sky", "tree", "water", "picture", "image", "shows", "near", "behind", "front", "large", "small", "two", "three", "several", "people", "kitchen", "room", "window", "describe", "detail", "scene", "object", "background", "reason", "because", "likely", "appears"]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=n_words))


def write_images(folder: Path, count: int, seed: int) -> list[str]:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in tqdm(range(count), desc="writing 336 px JPEGs", unit="image"):
        coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((336, 336), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-24, 25, size=field.shape, dtype=np.int16)
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def build_model_folder(folder: Path, seed: int) -> Path:
    """Tokenizer + CLIP-L/14-336 LlavaProcessor + a Llava config (no weights): what the host's loader reads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from llava_lf.formats import LLAVA_V1_CHAT_TEMPLATE

    rng = random.Random(seed)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    bpe.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    corpus = [_text(rng, 30) + "." for _ in range(20_000)]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", extra_special_tokens=["<image>"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                         image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_V1_CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                              num_hidden_layers=24, num_attention_heads=16, projection_dim=768)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4)
    LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                vision_feature_select_strategy="default", vision_feature_layer=-2).save_pretrained(folder)
    return folder


def make_samples(images: list[str], seed: int) -> dict[str, list]:
    """Rows in the host's aligned form (what its sharegpt converter hands the SFT processor)."""
    rng = random.Random(seed)
    rows: dict[str, list] = {key: [] for key in ("_prompt", "_response", "_system", "_tools", "_images", "_videos",
                                                   "_audios")}
    for image in images:
        messages = []
        for turn in range(rng.choice((1, 1, 2, 3))):
            question = _text(rng, rng.randint(6, 16)) + "?"
            messages.append({"role": "user", "content": ("<image>\n" if turn == 0 else "") + question})
            messages.append({"role": "assistant", "content": _text(rng, rng.randint(5, 60)) + "."})
        rows["_prompt"].append(messages[:-1])
        rows["_response"].append(messages[-1:])
        for key, value in (("_system", ""), ("_tools", ""), ("_images", [image]), ("_videos", []), ("_audios", [])):
            rows[key].append(value)
    return rows


@dataclass
class Variant:
    """One template + plugin, run through the host's SFT processor; wall and CPU seconds add up per chunk."""

    template: str
    model: Path
    wall: float = 0.0
    cpu: float = 0.0

    def __post_init__(self) -> None:
        from llamafactory.data.processor import SupervisedDatasetProcessor
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments, ModelArguments
        from llamafactory.model import load_tokenizer

        module = load_tokenizer(ModelArguments(model_name_or_path=str(self.model)))
        data_args = DataArguments(template=self.template, cutoff_len=2048)
        template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
        self.processor = SupervisedDatasetProcessor(template=template, data_args=data_args, **module)
        self.image_id = module["tokenizer"].convert_tokens_to_ids("<image>")

    def run(self, rows: dict[str, list]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        input_ids = self.processor.preprocess_dataset(rows)["input_ids"]
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        # Checked outside the timing; the chunk is then dropped, as datasets writes a batch out and lets it go.
        assert all(ids.count(self.image_id) == 576 for ids in input_ids), "each sample must hold 576 image tokens"


def plot(results: dict[str, float], ratio: float, cpu_ratio: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 2.8))
    bars = axis.barh(list(results), list(results.values()), color=["#999999", "#2a7ab9"])
    axis.bar_label(bars, labels=[f"{value:,.0f}/s" for value in results.values()], padding=4)
    axis.set_xlim(0, max(results.values()) * 1.2)
    axis.set_xlabel("samples per second (wall), one process")
    axis.set_title(f"LLaVA SFT preprocessing, 336 px JPEGs: {ratio:.0f}x wall, {cpu_ratio:.0f}x CPU time")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=100, help="rows per preprocess_dataset call")
    parser.add_argument("--out", type=Path, default=None, help="keep data, chart and results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="threads for the host's torch image processing (1: its fastest on a shared CPU, and "
                             "what each preprocessing worker process of a real run gets in effect)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="preprocess_bench_"))
    out.mkdir(parents=True, exist_ok=True)

    images = write_images(out / "images", args.samples, args.seed)
    model = build_model_folder(out / "model", args.seed)
    rows = make_samples(images, args.seed)
    from tqdm import tqdm

    ours, host = Variant("llava_v1", model), Variant("llava", model)
    # Alternate chunk by chunk, so both see the same load on a shared machine.
    for start in tqdm(range(0, args.samples, args.chunk), desc="preprocessing", unit="chunk"):
        chunk = {key: value[start : start + args.chunk] for key, value in rows.items()}
        ours.run(chunk)
        host.run(chunk)

    results = {"host llava plugin": args.samples / host.wall, "llava_lf plugin": args.samples / ours.wall}
    ratio, cpu_ratio = host.wall / ours.wall, host.cpu / ours.cpu
    print(f"samples: {args.samples}, 336 px JPEGs, 576 image tokens each, chunks of {args.chunk}, "
          f"torch threads {args.torch_threads}")
    for name, variant in (("host `llava` template + plugin", host), ("`llava_v1` + `llava_lf` plugin", ours)):
        print(f"{name:<32} {args.samples / variant.wall:>8,.0f} samples/s wall ({variant.wall:.2f} s), "
              f"{args.samples / variant.cpu:>8,.0f} per CPU-second")
    print(f"ratio: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU time (target >= 20x)")
    plot(results, ratio, cpu_ratio, out / "preprocess_throughput.png")
    (out / "preprocess_throughput.json").write_text(json.dumps({
        **results, "ratio_wall": ratio, "ratio_cpu": cpu_ratio, "samples": args.samples,
        "seconds": {"ours_wall": ours.wall, "ours_cpu": ours.cpu, "host_wall": host.wall, "host_cpu": host.cpu}},
        indent=2))
    print(f"chart: {out / 'preprocess_throughput.png'}")


if __name__ == "__main__":
    main()
