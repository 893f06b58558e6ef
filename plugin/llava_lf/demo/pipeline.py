"""The embedded default end to end: data, tiny models, stage 1, stage 2, export, evaluation, chat.

Every training and export step runs through the real `llamafactory-cli` with the YAMLs in `yaml/demo/`,
and uses the project's own converter, templates and assembler, so the demo exercises the product path.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llava_lf.assembly import AssemblySpec, assemble
from llava_lf.data.convert import convert_file
from llava_lf.data.convert.convert import update_dataset_info
from llava_lf.data.inspect import write_data_card
from llava_lf.errors import LlavaLfError
from llava_lf.evaluation.tasks.demo import TypeScore, load_questions

from .dataset import DemoData, write_demo_data
from .host_cli import run_host
from .report import accuracy_table, plot_accuracy, plot_losses
from .shapes import CELL_WORDS
from .tiny_models import TinyDims, build_language_model, build_vision_tower, train_tokenizer


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    recipes: Path  # the folder holding yaml/demo/*.yaml
    n_train: int = 2000
    n_test: int = 60  # five questions each
    seed: int = 0
    dims: TinyDims = TinyDims()
    train_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("max_steps", 2),) for a smoke run
    picture_size: int | None = None  # pixels a side; None: the tiny tower's tile (dims.image_size)
    warm_lm: Path | None = None  # an earlier demo's warmed language model on the same text: skip the warm-up
    small_share: float = 0.0  # the share of shapes drawn small (the NeXT demo's pictures)

    @property
    def common(self) -> dict[str, object]:
        """What every training run of the demo is given on top of its YAML."""
        return {"dataset_dir": DemoLayout(self.out).datasets, **dict(self.train_overrides)}


@dataclass(frozen=True)
class DemoLayout:
    """Every path the demo writes, derived from one output folder."""

    out: Path

    def __getattr__(self, name: str) -> Path:
        relative = {
            "data": "data", "datasets": "datasets", "logs": "logs", "results": "results",
            "clip": "models/clip", "llama": "models/llama", "llama_warm": "models/llama_warm",
            "base": "models/llava_base", "stage1": "stage1", "stage2": "stage2", "export": "export",
            "next_s1": "models/llava_next_s1", "next_stage2": "stage2_next", "next_export": "export_next",
        }
        if name not in relative:
            raise AttributeError(name)
        return self.out / relative[name]


@dataclass(frozen=True)
class DemoResult:
    before: dict[str, TypeScore]
    after: dict[str, TypeScore]
    chat_question: str
    chat_answer: str
    chat_expected: str
    export_dir: Path
    charts: list[Path]
    seconds: float


class Progress:
    def __init__(self, total: int):
        self.total, self.index, self.started = total, 0, time.time()

    def step(self, message: str) -> None:
        self.index += 1
        print(f"[{self.index}/{self.total}] {message}  (t={time.time() - self.started:.0f}s)", flush=True)


def prepare_datasets(data: DemoData, layout: DemoLayout) -> None:
    for name, source in (("shapes_caption", data.caption_json), ("shapes_instruct", data.instruct_json)):
        report = convert_file(source, data.image_dir, layout.datasets, name)
        print("      " + report.summary().replace("\n", "\n      "))
    shutil.copy(data.text_corpus, layout.datasets / "shapes_text.jsonl")
    update_dataset_info(layout.datasets, "shapes_text", {"file_name": "shapes_text.jsonl", "columns": {"prompt": "text"}})


def evaluate(model_dir: Path, data: DemoData, predictions: Path, label: str) -> dict[str, TypeScore]:
    """The held-out questions through `llava-lf eval demo`'s machinery (answers kept in `predictions`)."""
    from llava_lf.evaluation.tasks.demo import evaluate_demo

    return evaluate_demo(model_dir, data.test_questions, data.image_dir, predictions, label=label,
                         max_new_tokens=8, fresh=True)


def chat_once(model_dir: Path, data: DemoData) -> tuple[str, str, str]:
    """One answer through the host's own inference engine (the path `webchat`/`api` use)."""
    from llamafactory.chat import ChatModel

    question = load_questions(data.test_questions)[3]  # a position question about the first held-out image
    chat = ChatModel({"model_name_or_path": str(model_dir), "template": "llava_v1", "infer_backend": "huggingface",
                      "do_sample": False, "max_new_tokens": 8})
    reply = chat.chat([{"role": "user", "content": question["question"]}], images=[str(data.image_dir / question["image"])])
    return question["question"], reply[0].response_text.strip(), question["answer"]


def write_data_step(config: DemoConfig, layout: DemoLayout) -> DemoData:
    """The demo's first step: the synthetic pictures, their LLaVA JSON, and the datasets the host reads."""
    size = config.picture_size or config.dims.image_size
    data = write_demo_data(layout.data, config.n_train, config.n_test, size, config.seed,
                           small_share=config.small_share)
    prepare_datasets(data, layout)
    return data


def check_finished_warm_up(warm_lm: Path) -> None:
    finished = [warm_lm / "config.json", warm_lm / "trainer_state.json"]
    if not all(path.is_file() for path in finished):
        raise LlavaLfError(f"--warm-lm {warm_lm}: not a finished warm-up (no {finished[1].name}); give the "
                           "models/llama_warm folder of a demo that ran to the end, or leave --warm-lm out")


def reuse_warm_lm(warm_lm: Path, tokenizer, out: Path) -> None:
    """Copy an earlier demo's warmed language model into `out`, once its tokenizer is shown to be this text's.

    The text does not depend on the pictures (only on the scene count and seed), so the 1.5 demo's warm-up
    serves the NeXT demo: the step that takes half of either demo's time.
    """
    from transformers import AutoTokenizer

    check_finished_warm_up(warm_lm)
    if AutoTokenizer.from_pretrained(warm_lm).get_vocab() != tokenizer.get_vocab():
        raise LlavaLfError(f"--warm-lm {warm_lm}: its tokenizer was trained on other text (another --train-scenes "
                           "or --seed); run with the same ones as that demo, or leave --warm-lm out")
    shutil.copytree(warm_lm, out, dirs_exist_ok=True)


def data_and_models_steps(config: DemoConfig, layout: DemoLayout, progress: Progress) -> DemoData:
    """The steps every demo opens with: pictures and datasets, tiny parts, the text warm-up, stage 1's base."""
    if config.warm_lm is not None:  # before the pictures: a wrong folder fails at once
        check_finished_warm_up(config.warm_lm)
    progress.step(f"synthetic picture set: {config.n_train} training and {config.n_test} held-out scenes")
    data = write_data_step(config, layout)
    write_data_card({"shapes_caption": data.caption_json, "shapes_instruct": data.instruct_json}, data.image_dir,
                    layout.results / "data_card")

    progress.step("tiny CLIP vision tower and tiny LLaMA with a tokenizer trained on the synthetic text")
    corpus = [json.loads(line)["text"] for line in data.text_corpus.read_text().splitlines()]
    tokenizer = train_tokenizer(corpus, config.dims.vocab_size, words=CELL_WORDS)
    build_vision_tower(config.dims, layout.clip, seed=config.seed)
    build_language_model(config.dims, tokenizer, layout.llama, seed=config.seed)

    if config.warm_lm is not None:
        progress.step(f"language-model warm-up: taken from {config.warm_lm} (the same text)")
        reuse_warm_lm(config.warm_lm, tokenizer, layout.llama_warm)
    else:
        progress.step("language-model warm-up on text (llamafactory-cli train, stage: pt)")
        run_host("train", config.recipes / "lm_warmup.yaml",
                 {**config.common, "model_name_or_path": layout.llama, "output_dir": layout.llama_warm},
                 layout.logs / "lm_warmup.log")

    progress.step("assemble CLIP + projector + LLaMA into a llava-hf checkpoint")
    assemble(AssemblySpec(vision=layout.clip, llm=layout.llama_warm, out=layout.base))
    return data


def stage1_step(config: DemoConfig, layout: DemoLayout, progress: Progress) -> None:
    progress.step("stage 1: projector alignment on captions (llamafactory-cli train, template llava_plain)")
    run_host("train", config.recipes / "stage1_pretrain.yaml",
             {**config.common, "model_name_or_path": layout.base, "output_dir": layout.stage1}, layout.logs / "stage1.log")


def stage2_and_export(config: DemoConfig, recipe: str, start: Path, adapter: Path, export: Path,
                      progress: Progress, what: str = "") -> None:
    """Stage 2 (LoRA + projector) from `start`, then the merge into `export`, each through llamafactory-cli."""
    logs = DemoLayout(config.out).logs
    progress.step(f"stage 2{what}: LoRA + projector on questions (llamafactory-cli train, template llava_v1)")
    run_host("train", config.recipes / recipe, {**config.common, "model_name_or_path": start, "output_dir": adapter},
             logs / f"{adapter.name}.log")

    progress.step(f"export{what}: merge LoRA and projector (llamafactory-cli export)")
    run_host("export", config.recipes / "export.yaml",
             {"model_name_or_path": start, "adapter_name_or_path": adapter, "export_dir": export},
             logs / f"{export.name}.log")


def run_demo(config: DemoConfig) -> DemoResult:
    layout, progress = DemoLayout(config.out), Progress(9)
    layout.results.mkdir(parents=True, exist_ok=True)
    data = data_and_models_steps(config, layout, progress)
    before = evaluate(layout.base, data, layout.results / "predictions_before.jsonl", "eval before")
    stage1_step(config, layout, progress)
    stage2_and_export(config, "stage2_lora_sft.yaml", layout.stage1, layout.stage2, layout.export, progress)

    progress.step("held-out evaluation of the exported model")
    after = evaluate(layout.export, data, layout.results / "predictions_after.jsonl", "eval after")

    progress.step("one chat answer through the host's inference engine")
    question, answer, expected = chat_once(layout.export, data)

    charts = [
        plot_losses({"LM warm-up": layout.llama_warm, "stage 1": layout.stage1, "stage 2": layout.stage2},
                    layout.results / "loss_curves.png"),
        plot_accuracy(before, after, layout.results / "accuracy.png"),
    ]
    result = DemoResult(before, after, question, answer, expected, layout.export, charts, time.time() - progress.started)
    summary = {"before": {k: asdict(v) for k, v in before.items()}, "after": {k: asdict(v) for k, v in after.items()},
               "chat": {"question": question, "answer": answer, "expected": expected}, "seconds": result.seconds}
    (layout.results / "demo_results.json").write_text(json.dumps(summary, indent=2))
    return result


def format_result(result: DemoResult) -> str:
    return "\n".join([
        "",
        "Held-out accuracy (exact answer match):",
        accuracy_table(result.before, result.after),
        "",
        f"Chat: Q: {result.chat_question}  A: {result.chat_answer!r}  (expected {result.chat_expected!r})",
        f"Exported model: {result.export_dir}",
        "Charts: " + ", ".join(str(path) for path in result.charts),
        f"Total time: {result.seconds:.0f}s",
    ])
