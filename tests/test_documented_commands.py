"""Every `llamafactory-cli` command that README.md, docs/*.md and the recipe YAMLs' headers tell a user to run runs,
as written, on the tiny models: only the model, the data, the precision and the sizes are swapped in (the YAMLs'
own settings stay: gradient checkpointing, LoRA rank, additional_target, optim_args, templates), under the engine
the command names (none, DDP, ZeRO-2, ZeRO-3: two CPU processes, two nodes of one on loopback where it names
NNODES), for two steps. Export runs on an adapter a documented command trained; webchat and api start, answer one
page load or one request, and stop; chat answers a piped line.

The commands are read from the documents at collection time (tests/helpers/documented_commands.py), so a command
added to the docs is run without touching this file. Commands that differ only in what is swapped in share one
run: one per (verb, YAML, engine, the overrides that are kept).
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BIN, REPO, free_port, wait_for_port
from helpers.documented_commands import DocumentedCommand, convert_commands, documented_commands
from helpers.ports import stop_group
from helpers.training_runs import DEEPSPEED_CPU_FIX

import yaml

pytestmark = pytest.mark.host  # the documents' commands run through llamafactory-cli, on both hosts

# What is swapped in: the rest of every override a document writes is kept and decides which run it shares.
SWAPPED = {"model_name_or_path", "adapter_name_or_path", "output_dir", "export_dir", "dataset", "dataset_dir",
           "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "deepspeed"}
TRAIN_SIZES = {  # a CPU, the tiny model and two steps; precision off (no GPU), the YAML's own rest
    "bf16": "false", "tf32": "null", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
    "max_steps": 2, "cutoff_len": 64, "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
    "logging_steps": 1,
}
PROCESSES = 2
ENGINE_ORDER = ("none", "DDP", "ZeRO-2", "ZeRO-3")
VERB_ORDER = ("train", "export", "chat", "api", "webchat")
QUESTION = "What shapes are in the picture?"


@dataclass(frozen=True)
class Run:
    """One launch covering every documented command with the same key."""

    commands: tuple[DocumentedCommand, ...]

    @property
    def command(self) -> DocumentedCommand:
        """The one launched: a multi-node one when the group has it (it covers the single-node launch's parts)."""
        return max(self.commands, key=lambda command: command.nodes)

    @property
    def id(self) -> str:
        command = self.command
        kept = "".join(f"-{key}={value}" for key, value in _kept(command))
        nodes = f"-{command.nodes}nodes" if command.nodes > 1 else ""
        return f"{command.verb}-{Path(command.config).stem}-{command.engine}{nodes}{kept}"


def _kept(command: DocumentedCommand) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, value) for key, value in command.overrides if key not in SWAPPED))


def _runs(commands: list[DocumentedCommand]) -> list[Run]:
    groups: dict[tuple, list[DocumentedCommand]] = defaultdict(list)
    for command in commands:
        if not command.unrunnable:
            groups[(command.verb, command.config, command.engine, _kept(command))].append(command)
    runs = [Run(tuple(group)) for group in groups.values()]
    order = {verb: i for i, verb in enumerate(VERB_ORDER)}
    return sorted(runs, key=lambda run: (order.get(run.command.verb, len(order)),
                                         ENGINE_ORDER.index(run.command.engine), run.id))


COMMANDS = documented_commands()
RUNS = _runs(COMMANDS)


@dataclass
class Outcome:
    out: Path  # output_dir or export_dir
    log: str


@dataclass
class Launcher:
    """Launches each run at most once per module and keeps its outcome, so export and inference reuse training."""

    root: Path
    tiny_llava: Path
    datasets: Path
    image: Path
    done: dict[str, Outcome] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def outcome(self, run: Run) -> Outcome:
        if run.id in self.failed:
            pytest.fail(f"{run.id} failed earlier:\n{self.failed[run.id]}")
        if run.id not in self.done:
            try:
                self.done[run.id] = self._launch(run)
            except pytest.skip.Exception as skip:  # a missing optional package: said as a skip, not a failure
                self.skipped[run.id] = str(skip)
                raise
            except BaseException as error:
                self.failed[run.id] = str(error)[-6000:]
                raise
        return self.done[run.id]

    def adapter(self) -> Path:
        """The adapter of the cheapest documented LoRA training (no quantization) on the tiny model."""
        for run in RUNS:
            config = _config(run.command)
            if run.command.verb == "train" and config.get("finetuning_type") == "lora" \
                    and not config.get("quantization_bit"):
                return self.outcome(run).out
        pytest.fail("no documented LoRA training command to take an adapter from")

    def exported(self) -> Path:
        for run in RUNS:
            if run.command.verb == "export":
                return self.outcome(run).out
        pytest.fail("no documented export command")

    def _launch(self, run: Run) -> Outcome:
        command = run.command
        folder = self.root / run.id
        folder.mkdir(parents=True)
        (folder / "yaml").symlink_to(REPO / "yaml")  # the documents' paths are relative to the project's root
        config = _config(command)
        overrides = dict(command.overrides)
        if command.verb == "train":
            overrides.update(self._train_swaps(config, folder / "out"))
            out = folder / "out"
        elif command.verb == "export":
            overrides.update(model_name_or_path=self.tiny_llava, adapter_name_or_path=self.adapter(),
                             export_dir=folder / "out")
            out = folder / "out"
        elif "adapter_name_or_path" in overrides:  # base + adapter, no export
            overrides.update(model_name_or_path=self.tiny_llava, adapter_name_or_path=self.adapter())
            out = folder
        else:
            overrides.update(model_name_or_path=self.exported())
            out = folder
        argv = [str(BIN / "llamafactory-cli"), command.verb, command.config,
                *(f"{key}={value}" for key, value in overrides.items())]
        if command.verb in ("train", "export"):
            log = self._train(command, argv, folder)
        else:
            log = self._serve(command, argv, folder)
        return Outcome(out, log)

    def _train_swaps(self, config: dict, out: Path) -> dict:
        if "quantization_bit" in config:
            pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (not installed here)")
        plain = config.get("template") == "llava_plain"
        return {"model_name_or_path": self.tiny_llava, "dataset": "shapes_caption" if plain else "shapes_instruct",
                "dataset_dir": self.datasets, "output_dir": out, **TRAIN_SIZES}

    def _train(self, command: DocumentedCommand, argv: list[str], folder: Path) -> str:
        env = _environment(command)
        port = free_port()
        launches = []
        for rank in range(command.nodes):  # every node of a multi-node command, on loopback
            node = {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "NPROC_PER_NODE": str(PROCESSES // command.nodes)}
            if command.nodes > 1:
                node["NODE_RANK"] = str(rank)
            log = folder / f"node{rank}.log"
            with open(log, "w") as handle:
                launches.append((subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=node,
                                                  cwd=folder, start_new_session=True), log))
        try:
            codes = [process.wait(timeout=900) for process, _ in launches]
        finally:
            for process, _ in launches:
                stop_group(process)
        logs = "\n".join(log.read_text() for _, log in launches)
        assert codes == [0] * len(codes), f"{command} (run as {' '.join(argv[1:])}) exited {codes}:\n{logs[-6000:]}"
        return logs

    def _serve(self, command: DocumentedCommand, argv: list[str], folder: Path) -> str:
        env, log = _environment(command), folder / "serve.log"
        if command.verb == "chat":  # reads the terminal: one piped question
            done = subprocess.run(argv, input=f"{QUESTION}\nexit\n", capture_output=True, text=True, env=env,
                                  cwd=folder, timeout=600)
            log.write_text(done.stdout + done.stderr)
            assert done.returncode == 0, f"{command} exited {done.returncode}:\n{log.read_text()[-4000:]}"
            assert "Assistant:" in done.stdout, done.stdout[-2000:]
            return log.read_text()
        port = free_port()
        env.update(API_HOST="127.0.0.1", API_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", BROWSER="true")
        with open(log, "w") as handle:
            process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=folder,
                                       start_new_session=True)
        try:
            wait_for_port(process, port, log, 300)
            if command.verb == "api":
                self._ask_api(port, env.get("API_KEY", "none"))
            else:
                self._load_page(port)
        finally:
            stop_group(process)
        return log.read_text()

    def _ask_api(self, port: int, key: str) -> None:
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=300)
        image = "data:image/png;base64," + base64.b64encode(self.image.read_bytes()).decode()
        reply = client.chat.completions.create(model="llava1_5", temperature=0, max_tokens=8, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                         {"type": "text", "text": QUESTION}]}])
        assert reply.choices[0].message.content is not None
        assert reply.usage.prompt_tokens > 16  # the image became its tokens

    def _load_page(self, port: int) -> None:
        import httpx

        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=120)
        assert page.status_code == 200 and "gradio" in page.text.lower(), page.text[:500]


def _config(command: DocumentedCommand) -> dict:
    return yaml.safe_load((REPO / command.config).read_text())


def _environment(command: DocumentedCommand) -> dict[str, str]:
    """The command's own variables (ports and addresses are chosen per run), plus what a CPU needs."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **command.environment}
    for name in ("MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE", "GRADIO_SERVER_PORT", "API_PORT"):
        env.pop(name, None)
    env.pop("ALLOW_EXTRA_ARGS", None)  # an unknown key must fail, not be ignored
    if command.engine.startswith("ZeRO"):  # tests/test_training_deepspeed.py says why each is needed
        env["DS_ACCELERATOR"] = "cpu"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DEEPSPEED_CPU_FIX), os.environ.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def launcher(tmp_path_factory, tiny_llava, demo_data, request):
    data, datasets = demo_data
    launcher = Launcher(tmp_path_factory.mktemp("documented"), tiny_llava, datasets,
                        sorted(data.image_dir.glob("*.png"))[0])
    yield launcher
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if report is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown on every run, not only beside a failure
            report.write_line("")
            for line in summary(launcher):
                report.write_line(line)


def summary(launcher: Launcher) -> list[str]:
    """How many documented commands there are, which runs covered them, and which could not run as written."""
    lines = [f"documented commands: {len(COMMANDS)} found, {len(RUNS)} distinct runs, {len(launcher.done)} ran, "
             f"{len(launcher.failed)} failed, {len(launcher.skipped)} skipped"]
    for run in RUNS:
        status = ("ran" if run.id in launcher.done else "FAILED" if run.id in launcher.failed
                  else f"skipped ({launcher.skipped[run.id]})" if run.id in launcher.skipped else "not run")
        lines.append(f"  {status}: {run.id} ({len(run.commands)} command(s))")
        for command in run.commands[1:] if run.command is run.commands[0] else run.commands:
            if command is not run.command:
                lines.append(f"      shared by {command.where}")
    lines += [f"  not runnable as written ({command.unrunnable}): {command.where}"
              for command in COMMANDS if command.unrunnable]
    return lines


def test_the_documents_hold_the_recipe_commands():
    """The parser finds the commands the documents are known to hold (a parser that found none would pass all)."""
    ids = {run.id for run in RUNS}
    assert {"train-llava1_5_pretrain-ZeRO-2", "train-llava1_5_lora_sft-ZeRO-3", "export-llava1_5_lora_export-none",
            "webchat-llava1_5_infer-none", "api-llava1_5_infer-none"} <= ids, sorted(ids)
    for command in COMMANDS:
        assert (REPO / command.config).is_file(), f"{command}: no such file {command.config}"
        assert command.verb in VERB_ORDER, f"{command}: llamafactory-cli has no verb {command.verb}"
    assert len(RUNS) < len(COMMANDS)  # commands are shared


def test_documented_conversions_use_the_template_their_yaml_trains_with():
    """A dataset a `llava_plain` YAML trains on is converted with `--template llava_plain` wherever a document
    converts it (the stage-1 checks: one image and one pair per record), and a `llava_v1` one without it."""
    templates: dict[str, set[str]] = defaultdict(set)
    for path in sorted((REPO / "yaml").glob("*.yaml")) + sorted((REPO / "yaml" / "demo").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        for name in str(config.get("dataset", "")).split(","):
            if name and config.get("template"):
                templates[name.removesuffix("_grouped")].add(config["template"])
    checked = [command for command in convert_commands() if command.name in templates]
    assert {"llava_pretrain_558k", "llava_v1_5_mix665k"} <= {command.name for command in checked}, checked
    wrong = [f"{command.where}: --name {command.name} converted for {command.template}, trained with "
             f"{' or '.join(sorted(templates[command.name]))}"
             for command in checked if command.template not in templates[command.name]]
    assert not wrong, "\n".join(wrong)


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("run", RUNS, ids=[run.id for run in RUNS])
def test_documented_command_runs(run, launcher):
    outcome = launcher.outcome(run)
    command, config = run.command, _config(run.command)
    if command.verb == "train":
        losses = _losses(outcome.out)
        assert sorted(losses) == [1, 2] and all(math.isfinite(loss) for loss in losses.values()), losses
        if "llava_lf" in config.get("report_to", []):
            assert (outcome.out / "llava_lf_training.json").is_file()
        if not config.get("disable_gradient_checkpointing"):  # the host's default, which the YAMLs keep
            assert "Gradient checkpointing enabled." in outcome.log
        if command.engine != "none":
            assert f"world size: {PROCESSES}" in outcome.log
        if command.engine.startswith("ZeRO"):  # DeepSpeed's own checkpoint of the last step: one optimizer
            # partition per rank; under ZeRO-3 the model's parameters are partitioned too
            step = outcome.out / "checkpoint-2" / "global_step2"
            assert len(list(step.glob("zero_pp_rank_*_mp_rank_00_optim_states.pt"))) == PROCESSES, step
            partitioned = len(list(step.glob("zero_pp_rank_*_mp_rank_00_model_states.pt")))
            assert partitioned == (PROCESSES if command.engine == "ZeRO-3" else 0), step
    elif command.verb == "export":
        assert (outcome.out / "config.json").is_file() and list(outcome.out.glob("*.safetensors"))
    assert "Traceback" not in outcome.log
