"""Benchmark: samples/s of multimodal preprocessing, `llava_v1` + our `llava_lf` plugin vs the host's `llava`.

Both run through the host's own dataset preprocessing, `llamafactory.data.loader._get_preprocessed_dataset`
(what `get_dataset` calls for a training run: SFT processor, template, image-token expansion, tokenisation,
cutoff, `datasets.map`), on the same LLaVA-format samples, in this one process, alternating chunk by chunk so
both see the same load; wall and CPU time are both reported. Our template only tokenises there (the plugin's
seam binds `cutoff_len` to it). Target: >= 20x, because our plugin reads the 576-token count from the processor
configuration instead of decoding and CLIP-processing every image, and tokenises each 576-token run once.

    .venv/bin/python benchmarks/preprocess_throughput.py                     # 5,000 samples
    .venv/bin/python benchmarks/preprocess_throughput.py --samples 1000 --out runs/bench/preprocess

Data, all generated: 336 px photo-like JPEGs (smooth colour fields plus grain, so they decode like photos;
one per sample), LLaVA-Instruct-like conversations (1-3 turns, `<image>\\n` first), a LLaMA-style BPE
tokenizer (8,000 words, Metaspace) with `<image>`, and a CLIP-L/14-336 `LlavaProcessor` built from config
(shortest edge 336, centre crop 336, patch 14, CLS dropped: 576 tokens), loaded through the host's loader.
The host's CLIP processing gets one torch thread by default (`--torch-threads`). Each chunk is one
`datasets.Dataset` in the host's aligned columns, built before the timing, as the host's loader hands it on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

WORDS = ["the", "a", "of", "and", "to", "in", "is", "on", "with", "what", "color", "man", "woman", "table", "dog", "cat", "sign", "red", "blue", "green", "white", "black", "left", "right", "person", "standing", "sitting", "holding", "wearing", "building", "street", "car", "train", "bus", "sky", "tree", "water", "picture", "image", "shows", "near", "behind", "front", "large", "small", "two", "three", "several", "people", "kitchen", "room", "window", "describe", "detail", "scene", "object", "background", "reason", "because", "likely", "appears"]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGE_TOKENS = 576  # CLIP-L/14-336 without CLS: (336 / 14) ** 2


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=n_words))


def write_images(folder: Path, count: int, seed: int, sizes: tuple[tuple[int, int], ...] = ((336, 336),),
                 coarse: tuple[int, int] = (6, 6), name: str = "{index:06d}.jpg",
                 desc: str = "writing 336 px JPEGs") -> list[str]:
    """Photo-like JPEGs: a `coarse` grid of random colours smoothed to each size (`sizes`, (width, height), cycled)
    plus grain; `name` is formatted with the index, width and height."""
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in tqdm(range(count), desc=desc, unit="image"):
        width, height = sizes[index % len(sizes)]
        colours = rng.integers(0, 256, size=(*coarse, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(colours).resize((width, height), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-24, 25, size=smooth.shape, dtype=np.int16)
        path = folder / name.format(index=index, width=width, height=height)
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
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
class Clock:
    """Wall and CPU seconds, added up over the chunks."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


@contextlib.contextmanager
def processor_timed(clocks: dict[str, Clock], current: list[str]) -> Iterator[None]:
    """Time the host's `SupervisedDatasetProcessor.preprocess_dataset` (template, plugin, tokenisation: the
    per-sample work) where `datasets.map` calls it inside the loader; the call itself is unchanged."""
    from llamafactory.data.processor import SupervisedDatasetProcessor

    host = SupervisedDatasetProcessor.preprocess_dataset

    @functools.wraps(host)
    def preprocess_dataset(self, examples):
        with clocks[current[0]].running():
            return host(self, examples)

    SupervisedDatasetProcessor.preprocess_dataset = preprocess_dataset
    try:
        yield
    finally:
        SupervisedDatasetProcessor.preprocess_dataset = host


@dataclass
class Variant:
    """One template + plugin, run through the host's dataset preprocessing as a training run calls it.

    `llamafactory.data.loader._get_preprocessed_dataset` is the host's step between loading and training (SFT
    processor through `datasets.map`, which writes the rows to Arrow); our seam wraps it to bind `cutoff_len` to
    our template, and our template refuses to tokenise anywhere else. `step` times that call, `processing` the
    processor's share of it; rows and image tokens are counted from what the host returns, outside the timing."""

    template_name: str
    model: Path
    out: Path
    step: Clock = field(default_factory=Clock)
    processing: Clock = field(default_factory=Clock)
    rows: int = 0
    image_tokens: int = 0

    def __post_init__(self) -> None:
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments, ModelArguments
        from llamafactory.model import load_tokenizer
        from transformers import Seq2SeqTrainingArguments

        module = load_tokenizer(ModelArguments(model_name_or_path=str(self.model)))
        self.tokenizer, self.processor = module["tokenizer"], module["processor"]
        self.data_args = DataArguments(template=self.template_name, cutoff_len=2048)
        self.training_args = Seq2SeqTrainingArguments(output_dir=str(self.out / self.template_name), report_to="none")
        self.template = get_template_and_fix_tokenizer(self.tokenizer, self.data_args)
        self.image_id = self.tokenizer.convert_tokens_to_ids("<image>")

    @property
    def plugin(self) -> str:
        return type(self.template.mm_plugin).__name__

    def run(self, chunk) -> None:
        from llamafactory.data import loader

        with self.step.running(), contextlib.redirect_stdout(io.StringIO()):  # the host prints one example per call
            dataset = loader._get_preprocessed_dataset(chunk, self.data_args, self.training_args, "sft", self.template,
                                                       self.tokenizer, self.processor)
        counts = [ids.count(self.image_id) for ids in dataset["input_ids"]]
        self.rows += len(counts)
        self.image_tokens += sum(counts)
        self.check(counts)

    def check(self, counts: list[int]) -> None:
        """Each sample's image tokens, from one call: every sample must have all 576."""
        if any(count != IMAGE_TOKENS for count in counts):  # a miscount would make the comparison meaningless
            raise SystemExit(f"{self.template_name}: image tokens per sample {sorted(set(counts))}, "
                             f"expected {IMAGE_TOKENS} each")

    def figures(self) -> dict:
        return {"template": self.template_name, "plugin": self.plugin, "rows": self.rows,
                "image_tokens": self.image_tokens, "step": asdict(self.step), "processing": asdict(self.processing)}


def plot(ours: Variant, host: Variant, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.2, 3.0))
    labels, rates, colours = [], [], []
    for part, label in (("processing", "per-sample work"), ("step", "loader step (+ Arrow)")):
        for name, variant, colour in (("host llava", host, "#999999"), ("llava_lf", ours, "#2a7ab9")):
            labels.append(f"{name}: {label}")
            rates.append(variant.rows / getattr(variant, part).wall)
            colours.append(colour)
    bars = axis.barh(labels, rates, color=colours)
    axis.bar_label(bars, labels=[f"{rate:,.0f}/s" for rate in rates], padding=4)
    axis.set_xlim(0, max(rates) * 1.25)
    axis.set_xlabel("samples per second (wall), one process")
    axis.set_title(f"LLaVA SFT preprocessing, 336 px JPEGs: {ratio(host, ours, 'processing', 'wall'):.0f}x per-sample "
                   f"work, {ratio(host, ours, 'step', 'wall'):.0f}x loader step", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def ratio(host: Variant, ours: Variant, part: str, clock: str) -> float:
    return getattr(getattr(host, part), clock) / getattr(getattr(ours, part), clock)


def ratios(host: Variant, ours: Variant) -> dict[str, dict[str, float]]:
    return {part: {clock: ratio(host, ours, part, clock) for clock in ("wall", "cpu")} for part in ("processing", "step")}


def chunked(rows: dict[str, list], samples: int, chunk: int) -> list:
    """The rows as `datasets.Dataset`s of `chunk` rows, built before the timing: the host's loader hands these on."""
    import datasets

    return [datasets.Dataset.from_dict({key: value[start : start + chunk] for key, value in rows.items()})
            for start in range(0, samples, chunk)]


def run_alternated(chunks: list, ours: Variant, host: Variant) -> None:
    """Run both variants over the chunks, the processor's share timed inside the host's loader."""
    from tqdm import tqdm

    current = [""]
    with processor_timed({ours.template_name: ours.processing, host.template_name: host.processing}, current):
        # Alternate chunk by chunk, so both see the same load on a shared machine.
        for chunk in tqdm(chunks, desc="preprocessing", unit="chunk"):
            for variant in (ours, host):
                current[0] = variant.template_name
                variant.run(chunk)


def print_figures(host: Variant, ours: Variant, host_name: str, target: int) -> None:
    """Both parts' rates, wall and CPU, and the host / ours ratios against the benchmark's target."""
    for part, title in (("processing", "per-sample work (the host's SFT processor: template, plugin, tokenising)"),
                        ("step", "the loader step end to end (the same + datasets' Arrow writing)")):
        print(title)
        for name, variant in ((host_name, host), ("`llava_v1` + `llava_lf` plugin", ours)):
            clock = getattr(variant, part)
            print(f"  {name:<32} {variant.rows / clock.wall:>8,.0f} samples/s wall ({clock.wall:.2f} s), "
                  f"{variant.rows / clock.cpu:>8,.0f} per CPU-second ({variant.plugin}, {variant.rows} rows)")
    print(f"ratio: {ratio(host, ours, 'processing', 'wall'):.1f}x wall, {ratio(host, ours, 'processing', 'cpu'):.1f}x "
          f"CPU time (per-sample work; target >= {target}x)")
    print(f"loader step ratio: {ratio(host, ours, 'step', 'wall'):.1f}x wall, {ratio(host, ours, 'step', 'cpu'):.1f}x "
          "CPU time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=1000,
                        help="rows per call of the host's preprocessing (its default map batch is 1,000)")
    parser.add_argument("--out", type=Path, default=None, help="keep data, chart and results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="threads for the host's torch image processing (1: its fastest on a shared CPU, and "
                             "what each preprocessing worker process of a real run gets in effect)")
    args = parser.parse_args(argv)
    import torch

    import datasets

    torch.set_num_threads(args.torch_threads)
    datasets.disable_progress_bars()  # one bar per call would bury the benchmark's own
    out = args.out or Path(tempfile.mkdtemp(prefix="preprocess_bench_"))
    out.mkdir(parents=True, exist_ok=True)

    images = write_images(out / "images", args.samples, args.seed)
    model = build_model_folder(out / "model", args.seed)
    chunks = chunked(make_samples(images, args.seed), args.samples, args.chunk)

    ours, host = Variant("llava_v1", model, out / "runs"), Variant("llava", model, out / "runs")
    run_alternated(chunks, ours, host)

    print(f"samples: {args.samples}, 336 px JPEGs, {IMAGE_TOKENS} image tokens each, through the host's "
          f"_get_preprocessed_dataset in chunks of {args.chunk}, torch threads {args.torch_threads}")
    print_figures(host, ours, "host `llava` template + plugin", target=20)
    plot(ours, host, out / "preprocess_throughput.png")
    (out / "preprocess_throughput.json").write_text(json.dumps({
        "samples": args.samples, "chunk": args.chunk, "torch_threads": args.torch_threads,
        "ratio": ratios(host, ours), "host": host.figures(), "ours": ours.figures()}, indent=2))
    print(f"chart: {out / 'preprocess_throughput.png'}")


if __name__ == "__main__":
    main()
