"""Benchmark: LoRA SFT of a LLaVA-1.5-7B-shaped model, stock LLaMA-Factory vs our recipe YAML, in one run.

Builds a random-weight LLaVA-1.5-7B-shaped checkpoint (CLIP-L/14-336, mlp2x_gelu projector, LLaMA-7B)
and synthetic image+text samples of about 920 tokens, then trains, each in its own process:
  stock  the host's defaults as PERFORMANCE.md anchors them (`llava` template, LoRA r 128 on all
         linear layers, SDPA, bf16, gradient checkpointing, micro batch 16)
  ours   yaml/llava1_5_lora_sft.yaml (`llava_v1`, data from `llava-lf convert`), with benchmark overrides
and prints tokens/s, MFU (4N convention), peak GPU memory and the first 20 losses of both, the ratio
ours/stock and whether the loss curves agree within --loss-rtol. Writes OUT/lora_speed.json and .png.

    python benchmarks/lora_speed.py                    # 7B shape, on a GPU (benchmarks/gpu_run.sh)
    python benchmarks/lora_speed.py --tiny             # CPU-size correctness check (the test suite runs it)
    python benchmarks/lora_speed.py --variant nockpt disable_gradient_checkpointing=true
    python benchmarks/lora_speed.py --plan-only        # the 7B model on the meta device and the runs' settings
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from speed.configs import (
    BenchSettings,
    PlanError,
    RunPlan,
    align_global_batch,
    ours_plan,
    parse_assignments,
    parse_variant,
    plan_problems,
    stock_plan,
)
from speed.data import BenchData, write_bench_data
from speed.metrics import peak_tflops
from speed.model import SHAPES, ModelFacts, facts_without_weights
from speed.probe import RunRecord
from speed.report import acceptance, compare, document, run_summary, table, write_chart, write_json

DEFAULT_OURS = REPO / "yaml" / "llava1_5_lora_sft.yaml"
# Defaults per shape for the options left unset.
PROFILES = {
    # ~300 text tokens + 576 image tokens + template: the anchor's ~920 tokens per sample.
    "7b": {"text_words": 300, "stock_batch": 16, "steps": 20, "warmup_steps": 5, "loss_rtol": 0.02},
    "tiny": {"text_words": 24, "stock_batch": 8, "steps": 8, "warmup_steps": 2, "loss_rtol": 0.02},
}
# Overrides of every run, per shape: the tiny model learns at 1e-3 about as far in 8 steps as the
# loss comparison needs (at 2e-4 its curve barely leaves the start, and any two runs would "agree").
EVERY_RUN = {"7b": {}, "tiny": {"learning_rate": 1.0e-3}}


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):  # `timeout` sends TERM: finish with what was measured
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--tiny", action="store_true", help="--shape tiny (CPU correctness check)")
    parser.add_argument("--ours-yaml", type=Path, default=None, help=f"default: {DEFAULT_OURS.relative_to(REPO)}")
    parser.add_argument("--work", type=Path, default=None, help="model, data, run folders (default OUT/work)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "lora_speed",
                        help="results: lora_speed.json, lora_speed.png, logs/")
    parser.add_argument("--samples", type=int, default=None, help="default: global batch x steps (no epoch wrap)")
    parser.add_argument("--text-words", type=int, default=None, help="mean words of text per sample")
    parser.add_argument("--length-spread", type=float, default=0.0,
                        help="text length uniform in mean x [1-s, 1+s] (mixed lengths, for packing)")
    parser.add_argument("--stock-batch", type=int, default=None, help="stock micro batch (default 16)")
    parser.add_argument("--global-batch", type=int, default=None,
                        help="samples per optimizer step for every run (default: lcm of the micro batches)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (loss: the first 20)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="steps left out of the timing")
    parser.add_argument("--loss-rtol", type=float, default=None,
                        help="equal losses: every step within this relative difference, the mean within half "
                             "of it (default 0.02)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--peak-tflops", type=float, default=None, help="default: from the device name")
    parser.add_argument("--stock-set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides of the stock run")
    parser.add_argument("--ours-set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides of our run")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME [KEY=VALUE]",
                        help="one more run: ours (or base=stock) with these overrides; repeatable")
    parser.add_argument("--skip", nargs="+", default=[], choices=("stock", "ours"), help="runs to leave out")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds per training run")
    parser.add_argument("--rebuild", action="store_true", help="build the model even if WORK/model has it")
    parser.add_argument("--plan-only", action="store_true",
                        help="train nothing: count the shape's parameters on the meta device, write every run's "
                             "settings as a GPU would get them to OUT/lora_speed_plan.json, check each against "
                             "the host's arguments and our optim_args; exit 2 on a problem")
    args = parser.parse_args(argv)
    if args.tiny:
        args.shape = "tiny"
    for key, value in PROFILES[args.shape].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.work = args.work or args.out / "work"
    if args.steps <= args.warmup_steps:
        parser.error(f"--steps {args.steps} leaves nothing to time after --warmup-steps {args.warmup_steps}")
    return args


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for name in ("torch", "transformers", "peft", "accelerate", "llamafactory", "llamafactory-llava"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _child_env(on_gpu: bool) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the host finds torchrun here
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if not on_gpu:  # a correctness check on shared cores: one thread each runs faster than contending threads
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _stream(command: list[str], log: Path, timeout: float, on_gpu: bool, progress=None) -> int:
    """Run a child in its own process group, its output to `log`; a probe line advances `progress`.

    A watchdog kills the group after `timeout` seconds even if the child hangs silently (a forked
    `datasets.map` once hung for minutes without a line of output)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=_child_env(on_gpu), start_new_session=True)
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            os.killpg(child.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            for line in child.stdout or ():
                handle.write(line)
                if progress is not None and "[speed-probe] step" in line:
                    progress.update(1)
            code = child.wait()
        finally:
            watchdog.cancel()
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    if expired.is_set():
        raise RuntimeError(f"killed after --run-timeout {timeout:.0f}s; log {log}:\n{_tail(log)}")
    return code


def _tail(log: Path, lines: int = 15) -> str:
    return "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])


def build_model(args: argparse.Namespace, out: Path, on_gpu: bool) -> ModelFacts:
    facts_path = args.work / "model" / "bench_facts.json"
    if not args.rebuild and facts_path.is_file() and ModelFacts.read(facts_path).shape == args.shape:
        print(f"model: reusing {facts_path.parent}", flush=True)
        return ModelFacts.read(facts_path)
    log = out / "logs" / "build_model.log"
    command = [sys.executable, "-m", "speed.model", str(args.work / "model"), "--shape", args.shape]
    print(f"model: building the random {args.shape} checkpoint ...", flush=True)
    if _stream(command, log, args.run_timeout, on_gpu) != 0:
        raise RuntimeError(f"building the model failed; log {log}:\n{_tail(log)}")
    return ModelFacts.read(facts_path)


def train(plan: RunPlan, args: argparse.Namespace, out: Path, on_gpu: bool) -> RunRecord:
    from tqdm import tqdm

    record_path = args.work / "records" / f"{plan.name}.json"
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    log = out / "logs" / f"{plan.name}.log"
    command = [sys.executable, "-m", "speed.runner", str(record_path), *plan.cli_args()]
    with tqdm(total=args.steps, desc=f"{plan.name:>8}", unit="step") as progress:
        code = _stream(command, log, args.run_timeout, on_gpu, progress)
    if code != 0 or not record_path.is_file():
        raise RuntimeError(f"exit {code}; log {log}:\n{_tail(log)}")
    return RunRecord.read(record_path)


def plans_for(args: argparse.Namespace, settings: BenchSettings) -> list[RunPlan]:
    ours_yaml = args.ours_yaml or DEFAULT_OURS
    base_sets = {"stock": parse_assignments(args.stock_set, "--stock-set"),
                 "ours": parse_assignments(args.ours_set, "--ours-set")}
    plans = []
    if "stock" not in args.skip:
        plans.append(stock_plan(settings, extra=base_sets["stock"]))
    if "ours" not in args.skip:
        plans.append(ours_plan(settings, ours_yaml, extra=base_sets["ours"]))
    for words in args.variant:  # a variant starts from its base run, --stock-set / --ours-set included
        name, base, extra = parse_variant(words)
        extra = {**base_sets[base], **extra}
        plan = stock_plan(settings, name, extra) if base == "stock" else ours_plan(settings, ours_yaml, name, extra)
        plans.append(plan)
    if len({plan.name for plan in plans}) != len(plans):
        raise PlanError("two runs share a name; give each --variant its own NAME")
    return plans


def plan_only(args: argparse.Namespace) -> int:
    """The runs as a GPU machine would get them, the model counted on the meta device: nothing trained."""
    from dataclasses import asdict

    facts = facts_without_weights(SHAPES[args.shape])
    settings = BenchSettings(model_dir=args.work / "model", data=BenchData(args.work / "data"), work=args.work,
                             max_steps=args.steps, seed=args.seed, on_gpu=True, stock_micro_batch=args.stock_batch,
                             every_run=EVERY_RUN[args.shape])
    plans = plans_for(args, settings)
    global_batch = align_global_batch(plans, args.global_batch)
    problems = [problem for plan in plans for problem in plan_problems(plan)]
    plan = {"shape": args.shape, "facts": asdict(facts), "global_batch": global_batch, "steps": args.steps,
            "runs": {plan.name: {"base": plan.base, "command": plan.cli_args(), "settings": plan.merged()}
                     for plan in plans}, "problems": problems}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lora_speed_plan.json").write_text(json.dumps(plan, indent=1, default=str), encoding="utf-8")
    print(f"{args.shape}: language model {facts.llm_params / 1e9:.3f}B, vision {facts.vision_params / 1e6:.1f}M, "
          f"{facts.image_tokens} image tokens; runs {', '.join(plan['runs'])}; global batch {global_batch}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 2 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan_only:
        return plan_only(args)
    out = args.out
    signal.signal(signal.SIGTERM, _on_signal)
    import torch

    on_gpu = torch.cuda.is_available()  # the orchestrator only asks; it never initialises a context
    shape = SHAPES[args.shape]
    data = BenchData(args.work / "data")
    facts = build_model(args, out, on_gpu)
    settings = BenchSettings(model_dir=args.work / "model", data=data, work=args.work, max_steps=args.steps,
                             seed=args.seed, on_gpu=on_gpu, stock_micro_batch=args.stock_batch,
                             every_run=EVERY_RUN[args.shape])
    plans = plans_for(args, settings)
    global_batch = align_global_batch(plans, args.global_batch)
    samples = args.samples or global_batch * args.steps
    print(f"data: {samples} samples, ~{args.text_words} words + {shape.image_tokens} image tokens each", flush=True)
    write_bench_data(data, samples, shape.image_size, args.text_words, args.length_spread, args.seed)

    device = "cpu"
    peak = args.peak_tflops
    run_settings = {"shape": args.shape, "samples": samples, "text_words": args.text_words,
                    "length_spread": args.length_spread, "global_batch": global_batch, "steps": args.steps,
                    "warmup_steps": args.warmup_steps, "seed": args.seed, "loss_rtol": args.loss_rtol,
                    "ours_yaml": str(args.ours_yaml or DEFAULT_OURS), "versions": _versions(),
                    "plans": {plan.name: {"base": plan.base, "command": plan.cli_args()} for plan in plans}}
    runs, records = {}, {}
    interrupted = None
    for plan in plans:
        try:
            records[plan.name] = record = train(plan, args, out, on_gpu)
        except Interrupted as stop:
            interrupted = str(stop)
            runs[plan.name] = {"error": f"interrupted: {interrupted}"}
            break
        except (RuntimeError, PlanError) as failure:
            runs[plan.name] = {"error": str(failure)}
            print(f"{plan.name} failed: {failure}", file=sys.stderr, flush=True)
            continue
        device = record.device
        peak = peak or peak_tflops(device)
        try:
            runs[plan.name] = run_summary(record, facts, args.warmup_steps, peak)
        except ValueError as failure:  # fewer steps than the warm-up (a run stopped early)
            runs[plan.name] = {"error": str(failure)}
            continue
        plugin_report = args.work / "runs" / plan.name / "llava_lf_training.json"  # written by our callback
        if plugin_report.is_file():
            runs[plan.name]["plugin_report"] = json.loads(plugin_report.read_text(encoding="utf-8"))
        _write(out, run_settings, facts, device, peak, runs, records, on_gpu)
    result = _write(out, run_settings, facts, device, peak, runs, records, on_gpu)
    print(table(result))
    chart = out / "lora_speed.png"
    drawn = write_chart(result, chart)
    print(f"results: {out / 'lora_speed.json'}" + (f", {chart}" if drawn else " (no matplotlib: no chart)"))
    return 1 if interrupted or any("error" in run for run in runs.values()) else 0


def _write(out, run_settings, facts, device, peak, runs, records, on_gpu):
    reference = "stock" if "stock" in records else next(iter(records), "stock")
    comparisons = compare(runs, records, reference, run_settings["loss_rtol"])
    result = document(run_settings, facts, device, peak, runs, comparisons, acceptance(runs, comparisons, on_gpu))
    write_json(result, out / "lora_speed.json")
    return result


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except PlanError as error:
        print(f"lora_speed: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Interrupted as stop:  # before any run finished: nothing measured to write
        print(f"lora_speed: stopped by {stop} before a run finished", file=sys.stderr)
        raise SystemExit(124) from None
