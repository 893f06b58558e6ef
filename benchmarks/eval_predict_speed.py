"""Benchmark: `llava-lf eval ... predict`'s batched generation against one question at a time, same model, one run.

LLaVA's runners answer one question at a time (batch size 1). Ours left-pads a batch and generates it in one
`generate` call (`llava_lf.evaluation.predict.Predictor.predict`). This script times both on the same questions
with the same loaded model, checks that greedy decoding gives the same answers either way, and prints
questions per second for each and the speed-up. The two alternate `--repeats` times and the fastest of each
counts: on a shared machine the slower repeats measure the neighbours.

By default everything is built here, nothing downloaded: the demo's synthetic pictures and held-out
questions, and a tiny random-weight LLaVA (CLIP-style tower, LLaMA-style LM) assembled by our assembler, as the
test suite's `tiny_llava` fixture does. `--model` (with `--demo-questions` and `--image-folder`) uses existing
ones instead.

    python benchmarks/eval_predict_speed.py                          # 64 questions, batch 16, CPU
    python benchmarks/eval_predict_speed.py --threads 1              # a shared CPU machine (docs/performance.md)
    python benchmarks/eval_predict_speed.py --questions 8 --batch-size 4 --max-new-tokens 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an accidental download fails fast
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS_PER_SCENE = 5  # the demo asks one question of each type about every held-out picture


@dataclass(frozen=True)
class Timing:
    label: str
    batch_size: int
    seconds: list[float]  # one per repeat
    questions: int

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def questions_per_s(self) -> float:
        return self.questions / self.best


@dataclass(frozen=True)
class SpeedResult:
    questions: int
    max_new_tokens: int
    threads: int
    repeats: int
    one_at_a_time: Timing
    batched: Timing
    identical: int  # answers equal between the two runs
    differing: list[dict]  # {"key", "question", "one_at_a_time", "run", "answer"}: the first run that changed it
    answers: dict[str, list[str]]  # the last run's answers of each, in question order

    @property
    def speedup(self) -> float:
        return self.batched.questions_per_s / self.one_at_a_time.questions_per_s


def build_demo_model(work: Path, questions: int, image_size: int = 48) -> tuple[Path, Path, Path]:
    """The demo's pictures and questions, and a tiny llava-hf checkpoint built from config; returns
    (model folder, questions JSONL, image folder)."""
    from llava_lf.assembly import AssemblySpec, assemble
    from llava_lf.demo.dataset import write_demo_data
    from llava_lf.demo.tiny_models import TinyDims, build_language_model, build_vision_tower, train_tokenizer

    scenes = math.ceil(questions / QUESTIONS_PER_SCENE)
    data = write_demo_data(work / "data", n_train=8, n_test=scenes, image_size=image_size, seed=0, n_text=64)
    dims = TinyDims(image_size=image_size, text_layers=2, vocab_size=400)  # the test suite's tiny model
    texts = [json.loads(line)["text"] for line in data.text_corpus.read_text(encoding="utf-8").splitlines()]
    tokenizer = train_tokenizer(texts, dims.vocab_size)
    clip = build_vision_tower(dims, work / "clip")
    llama = build_language_model(dims, tokenizer, work / "llama")
    model = assemble(AssemblySpec(vision=clip, llm=llama, out=work / "model"))
    return model, data.test_questions, data.image_dir


def timed(predictor, requests, batch_size: int, label: str) -> tuple[float, list[str]]:
    started = time.perf_counter()
    answers = [p.answer for p in predictor.predict(requests, batch_size=batch_size, desc=label)]
    return time.perf_counter() - started, answers


def measure(model: Path, questions_file: Path, image_folder: Path, questions: int, batch_size: int,
            max_new_tokens: int, repeats: int = 1) -> SpeedResult:
    import torch

    from llava_lf.evaluation.predict import Predictor
    from llava_lf.evaluation.tasks.demo import demo_requests, load_questions

    requests = demo_requests(load_questions(questions_file), image_folder)[:questions]
    if len(requests) < questions:
        raise SystemExit(f"{questions_file} holds {len(requests)} questions, fewer than --questions {questions}")
    predictor = Predictor(model, max_new_tokens=max_new_tokens, device="cpu", dtype="float32")
    timed(predictor, requests[:2], 2, "warm-up")  # first-call costs (allocator, kernels) counted in neither run
    # The two alternate, one at a time first, so that a busy spell on a shared machine hits both alike.
    seconds: dict[int, list[float]] = {1: [], batch_size: []}
    reference: list[str] = []  # the first one-at-a-time answers; every later run must give them again
    differing: dict[str, dict] = {}
    last: dict[str, list[str]] = {}
    for _ in range(repeats):
        for size, label in ((1, "one at a time"), (batch_size, "batched")):
            elapsed, answers = timed(predictor, requests, size, label)
            seconds[size].append(elapsed)
            last[label] = answers
            reference = reference or answers
            for request, expected, got in zip(requests, reference, answers, strict=True):
                if got != expected:
                    differing.setdefault(request.key, {"key": request.key, "question": request.question,
                                                       "one_at_a_time": expected, "run": label, "answer": got})
    single = Timing("one at a time", 1, seconds[1], len(requests))
    batched = Timing("batched", batch_size, seconds[batch_size], len(requests))
    return SpeedResult(len(requests), max_new_tokens, torch.get_num_threads(), repeats, single, batched,
                       len(requests) - len(differing), list(differing.values()), last)


def report(result: SpeedResult) -> str:
    lines = [f"questions: {result.questions}  max_new_tokens: {result.max_new_tokens}  device: cpu  "
             f"torch threads: {result.threads}  repeats: {result.repeats}"]
    for timing in (result.one_at_a_time, result.batched):
        lines.append(f"{timing.label} (batch size {timing.batch_size}): {timing.best:.2f} s, "
                     f"{timing.questions_per_s:.2f} questions/s (best of "
                     + " / ".join(f"{s:.2f}" for s in timing.seconds) + " s)")
    lines.append(f"speed-up: {result.speedup:.2f}x")
    lines.append(f"answers identical: {result.identical} of {result.questions}")
    for item in result.differing:
        lines.append(f"  differs {item['key']}: {item['question']!r}: one at a time {item['one_at_a_time']!r}, "
                     f"{item['run']} {item['answer']!r}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--questions", type=int, default=64, help="how many demo questions to answer")
    parser.add_argument("--batch-size", type=int, default=16, help="the batched run's batch size")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="times each is run, alternating; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--model", type=Path, default=None, help="an existing llava-hf checkpoint (default: build one)")
    parser.add_argument("--demo-questions", type=Path, default=None, help="with --model: the demo's questions JSONL")
    parser.add_argument("--image-folder", type=Path, default=None, help="with --model: the demo's images")
    parser.add_argument("--work", type=Path, default=None, help="where the built model goes (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.batch_size < 2 or args.repeats < 1:
        parser.error("--batch-size must be 2 or more (1 is the run it is compared with), --repeats 1 or more")
    if args.model is not None and (args.demo_questions is None or args.image_folder is None):
        parser.error("--model needs --demo-questions and --image-folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="eval_predict_speed_") as scratch:
        if args.model is not None:
            model, questions_file, images = args.model, args.demo_questions, args.image_folder
        else:
            model, questions_file, images = build_demo_model(args.work or Path(scratch), args.questions)
        result = measure(model, questions_file, images, args.questions, args.batch_size, args.max_new_tokens,
                         args.repeats)
    print(report(result))
    if args.json is not None:
        figures = asdict(result) | {"speedup": result.speedup,
                                    "questions_per_s": {"one_at_a_time": result.one_at_a_time.questions_per_s,
                                                        "batched": result.batched.questions_per_s}}
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    # The speed-up only counts if batching changed no answer.
    return 0 if not result.differing else 1


if __name__ == "__main__":
    sys.exit(main())
