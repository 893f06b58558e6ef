"""Benchmark: peak RSS of `llava-lf assemble` against the size of the checkpoint it writes.

Target: a 7B assembly must not hold two copies of the weights; peak RSS at most about 1.3x the
output size. Measured on a random ~1.1B-parameter LLaMA (TinyLlama-1.1B shape, vocabulary 32000, bf16) and
a random CLIP ViT-L/14-336 vision tower (fp32, as OpenAI ships it), both built from config. Each run is
its own subprocess; its peak RSS is read from `os.wait4`'s resource usage for that child alone. The random
models are built in another child, so that this process stays small: Linux carries a parent's RSS at fork
into the child's ru_maxrss.

    .venv/bin/python benchmarks/assemble_peak_rss.py                    # safetensors and .bin sources
    .venv/bin/python benchmarks/assemble_peak_rss.py --formats safetensors --keep /tmp/bench
    .venv/bin/python benchmarks/assemble_peak_rss.py --shape tiny      # a smoke run: 2-layer models, seconds

`--naive` also measures loading both models with `from_pretrained` and saving the Llava with
`save_pretrained` (what an in-memory assembler does) for comparison; it needs several times the memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LLAMA_1B = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
            "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 2048,
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False}
CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
              "image_size": 336, "patch_size": 14, "projection_dim": 768}
LLAMA_TINY = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
              "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False}
CLIP_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "image_size": 56, "patch_size": 14, "projection_dim": 64}
SHAPES = {"1b": (LLAMA_1B, CLIP_L_336), "tiny": (LLAMA_TINY, CLIP_TINY)}  # (language model, vision tower)
NAIVE = """
import sys, torch
from transformers import (AutoModelForCausalLM, CLIPVisionModel, LlavaConfig, LlavaForConditionalGeneration)
vision = CLIPVisionModel.from_pretrained(sys.argv[1])
llm = AutoModelForCausalLM.from_pretrained(sys.argv[2])
config = LlavaConfig(vision_config=vision.config, text_config=llm.config)
model = LlavaForConditionalGeneration(config).to(llm.dtype)
model.model.vision_tower.load_state_dict(vision.state_dict())
model.model.language_model.load_state_dict(llm.model.state_dict())
model.lm_head.load_state_dict(llm.lm_head.state_dict())
model.save_pretrained(sys.argv[3])
"""


def word_tokenizer(size: int):
    """A word-level tokenizer with exactly `size` entries, so <image> and <pad> grow the 32000-row vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def input_paths(work: Path, shape: str, formats: list[str]) -> dict[str, Path]:
    return {"clip": work / f"clip-{shape}"} | {fmt: work / f"llama-{shape}-{fmt}" for fmt in formats}


def build_inputs(work: Path, formats: list[str], shape: str = "1b") -> dict[str, Path]:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    llama, vision = SHAPES[shape]
    torch.manual_seed(0)
    paths = input_paths(work, shape, formats)
    clip, side = paths.pop("clip"), vision["image_size"]
    if not clip.is_dir():
        print(f"building a random CLIP vision tower ({shape}, fp32) ...", flush=True)
        CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(clip)
        CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(clip)
    llms = paths
    if not all(path.is_dir() for path in llms.values()):
        print(f"building a random LLaMA ({shape}, bf16) ...", flush=True)
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**llama, dtype="bfloat16"))
        model = model.to_empty(device="cpu").to(torch.bfloat16)
        with torch.no_grad():
            for parameter in model.parameters():  # random, cheaply: normal for matrices, ones for norms
                parameter.normal_(0, 0.02) if parameter.dim() > 1 else parameter.fill_(1.0)
        tokenizer = word_tokenizer(llama["vocab_size"])
        for fmt, path in llms.items():
            if path.is_dir():
                continue
            if fmt == "safetensors":
                model.save_pretrained(path)
            else:  # Vicuna and original LLaVA ship pytorch_model.bin
                model.config.save_pretrained(path)
                torch.save(model.state_dict(), path / "pytorch_model.bin")
            tokenizer.save_pretrained(path)
        del model
    print(f"parameters: {sum_params(llms[formats[0]]) / 1e9:.2f}B language model", flush=True)
    return {"clip": clip, **llms}


def sum_params(directory: Path) -> int:
    config = json.loads((directory / "config.json").read_text())
    hidden, inter, layers, vocab = (config[key] for key in ("hidden_size", "intermediate_size",
                                                            "num_hidden_layers", "vocab_size"))
    kv = hidden * config["num_key_value_heads"] // config["num_attention_heads"]
    return 2 * vocab * hidden + layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter + 2 * hidden) + hidden


def peak_rss(command: list[str]) -> tuple[int, float]:
    """Run `command` as a child; its peak resident set in bytes and its wall time."""
    started = time.time()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{child.stderr.read().decode()[-3000:]}")
    return usage.ru_maxrss * 1024, time.time() - started


def weights_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.safetensors"))


def chart(rows: list[tuple[str, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _, _ in rows]
    figure, axis = plt.subplots(figsize=(7, 3.2))
    axis.barh(labels, [peak for _, peak, _ in rows], color="#4c72b0", label="peak RSS")
    axis.barh(labels, [out for _, _, out in rows], color="none", edgecolor="black", hatch="//",
              label="output weights")
    axis.axvline(1.3 * rows[0][2], color="#c44e52", linestyle="--", label="1.3x output (target)")
    axis.set_xlabel("GiB")
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title("llava-lf assemble: peak memory vs checkpoint size")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b",
                        help="1b: TinyLlama-1.1B + CLIP-L/14-336 (the measurement); tiny: 2-layer models (a smoke run)")
    parser.add_argument("--formats", nargs="+", default=["safetensors", "bin"], choices=["safetensors", "bin"])
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (and reuse) the random models")
    parser.add_argument("--naive", action="store_true", help="also measure a from_pretrained/save_pretrained assembly")
    parser.add_argument("--chart", type=Path, default=Path("assemble_peak_rss.png"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--build-into", type=Path, default=None, help=argparse.SUPPRESS)  # the builder child
    args = parser.parse_args()
    if args.build_into is not None:
        build_inputs(args.build_into, args.formats, args.shape)
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="assemble_rss_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, __file__, "--build-into", str(work), "--shape", args.shape,
                        "--formats", *args.formats], check=True)
        inputs = input_paths(work, args.shape, args.formats)
        baseline, _ = peak_rss([str(BIN / "python"), "-c", "import torch, transformers, llava_lf.assembly.build"])
        print(f"interpreter with torch + transformers imported: {baseline / 2**30:.2f} GiB peak RSS")
        rows, figures = [], {"baseline_rss_bytes": baseline, "runs": {}}
        for fmt in args.formats:
            out = work / f"llava-{fmt}"
            shutil.rmtree(out, ignore_errors=True)
            peak, seconds = peak_rss([str(BIN / "llava-lf"), "assemble", "--preset", "llava1_5_7b", "--vision",
                                      str(inputs["clip"]), "--llm", str(inputs[fmt]), "--out", str(out),
                                      "--dtype", "bfloat16", "--quiet"])
            size = weights_bytes(out)
            rows.append((f"streaming, {fmt} source", peak / 2**30, size / 2**30))
            figures["runs"][fmt] = {"out": str(out), "peak_rss_bytes": peak, "output_bytes": size, "seconds": seconds}
            print(f"{fmt:>11} source: output {size / 2**30:.2f} GiB, peak RSS {peak / 2**30:.2f} GiB "
                  f"= {peak / size:.2f}x output, {seconds:.0f} s")
        if args.naive:
            out = work / "llava-naive"
            shutil.rmtree(out, ignore_errors=True)
            peak, seconds = peak_rss([str(BIN / "python"), "-c", NAIVE, str(inputs["clip"]),
                                      str(inputs[args.formats[0]]), str(out)])
            size = weights_bytes(out)
            rows.append(("from_pretrained + save_pretrained", peak / 2**30, size / 2**30))
            print(f"      naive: output {size / 2**30:.2f} GiB, peak RSS {peak / 2**30:.2f} GiB "
                  f"= {peak / size:.2f}x output, {seconds:.0f} s")
        chart(rows, args.chart)
        print(f"chart: {args.chart}")
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
