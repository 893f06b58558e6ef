"""`llava-lf demo --next`: the demo's pipeline through LLaVA-NeXT, beside LLaVA-1.5 on the same questions.

The pictures are 96 px a side, twice the tiny tower's 48-px tile, and half the shapes are drawn small. One text
warm-up and one stage 1 (LLaVA-NeXT's stage 1 is LLaVA-1.5's) feed two stage 2 runs on the same data: LLaVA-1.5,
which sees each picture shrunk to one 48-px tile, and LLaVA-NeXT, made from the same stage 1 by
`llava-lf assemble --preset llava1_6_vicuna_7b --llava`, which also sees it as a 2x2 grid of tiles at full size.
Both are scored on the same held-out questions, those about small shapes apart.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from llava_lf.evaluation.prediction_file import answers_for
from llava_lf.evaluation.tasks.demo import TypeScore, load_questions, question_ids, score

from .dataset import DemoData
from .pipeline import DemoConfig, DemoLayout, Progress, data_and_models_steps, evaluate, stage1_step, stage2_and_export
from .report import comparison_chart, comparison_table, plot_losses

NEXT_PRESET = "llava1_6_vicuna_7b"  # the preset a user upgrades Vicuna's stage 1 with; its grids fit any tile
PICTURE_SIZE = 96  # two 48-px tiles a side: AnyRes picks the 2x2 grid and sees every pixel
SMALL_SHARE = 0.5
GROUPS = ("all", "small", "large")  # every question; those about a small shape (count: a scene with one); the rest
NEXT_STEPS = 11

Scores = dict[str, dict[str, TypeScore]]  # group -> question type (and "all") -> score


def next_demo_config(config: DemoConfig) -> DemoConfig:
    """The NeXT demo's pictures; everything else (scenes, seed, tiny parts, overrides) as given."""
    return replace(config, picture_size=PICTURE_SIZE, small_share=SMALL_SHARE)


@dataclass(frozen=True)
class NextDemoResult:
    llava15: Scores
    llava_next: Scores
    next_export: Path
    charts: list[Path]
    seconds: float


def upgrade_step(layout: DemoLayout, progress: Progress) -> None:
    """The documented command, through `llava-lf assemble`'s own parser: stage 1 made a LLaVA-NeXT checkpoint."""
    from llava_lf.assembly.cli import add_subcommand

    progress.step(f"upgrade stage 1 to LLaVA-NeXT (llava-lf assemble --preset {NEXT_PRESET} --llava)")
    parser = argparse.ArgumentParser(prog="llava-lf")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["assemble", "--preset", NEXT_PRESET, "--llava", str(layout.stage1),
                              "--out", str(layout.next_s1), "--quiet"])
    args.run(args)


def grouped_scores(data: DemoData, predictions: Path) -> Scores:
    """Per-type scores of every question, of those about small shapes, and of the rest."""
    questions = load_questions(data.test_questions)
    answers, _ = answers_for(question_ids(questions), predictions)
    members = {"all": questions, "small": [q for q in questions if q.get("small")],
               "large": [q for q in questions if not q.get("small")]}
    return {group: score(members[group], answers) for group in GROUPS if members[group]}


def run_next_demo(config: DemoConfig) -> NextDemoResult:
    config = next_demo_config(config)
    layout, progress = DemoLayout(config.out), Progress(NEXT_STEPS)
    layout.results.mkdir(parents=True, exist_ok=True)
    data = data_and_models_steps(config, layout, progress)
    stage1_step(config, layout, progress)
    stage2_and_export(config, "stage2_lora_sft.yaml", layout.stage1, layout.stage2, layout.export, progress,
                      " (LLaVA-1.5)")
    upgrade_step(layout, progress)
    stage2_and_export(config, "stage2_next_lora_sft.yaml", layout.next_s1, layout.next_stage2, layout.next_export,
                      progress, " (LLaVA-NeXT, AnyRes)")

    progress.step("held-out evaluation of both exported models on the same questions")
    scores = {}
    for name, model in (("llava15", layout.export), ("llava_next", layout.next_export)):
        predictions = layout.results / f"predictions_{name}.jsonl"
        evaluate(model, data, predictions, f"eval {name}")
        scores[name] = grouped_scores(data, predictions)

    charts = [
        plot_losses({"LM warm-up": layout.llama_warm, "stage 1": layout.stage1, "stage 2 LLaVA-1.5": layout.stage2,
                     "stage 2 LLaVA-NeXT": layout.next_stage2}, layout.results / "loss_curves_next.png"),
        comparison_chart(scores["llava15"], scores["llava_next"], layout.results / "accuracy_next.png"),
    ]
    result = NextDemoResult(scores["llava15"], scores["llava_next"], layout.next_export, charts,
                            time.time() - progress.started)
    summary = {name: {group: {qtype: asdict(s) for qtype, s in by_type.items()} for group, by_type in groups.items()}
               for name, groups in scores.items()}
    summary.update(picture_size=config.picture_size, small_share=config.small_share, seconds=result.seconds)
    (layout.results / "next_demo_results.json").write_text(json.dumps(summary, indent=2))
    return result


def format_next_result(result: NextDemoResult) -> str:
    return "\n".join([
        "",
        "Held-out accuracy (exact answer match), LLaVA-1.5 beside LLaVA-NeXT: one stage 1, the same questions;",
        f"{PICTURE_SIZE}-px pictures, {SMALL_SHARE:.0%} of shapes small ('small': questions about a small shape):",
        comparison_table(result.llava15, result.llava_next, GROUPS),
        "",
        f"Exported LLaVA-NeXT model: {result.next_export}",
        "Charts: " + ", ".join(str(path) for path in result.charts),
        f"Total time: {result.seconds:.0f}s",
    ])
