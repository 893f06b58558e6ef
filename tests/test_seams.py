"""Every host contact declared in `llava_lf.seams`, each fitting this host (release and main), a misfit said once by
feature and stopping the run that needs it; the checks of late-loaded modules run when those modules load."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.host


def test_every_declared_seam_fits_this_host():
    """Checked by shape on 0.9.5 and on main; the turn-fitting seam is wrapped by registration."""
    import llamafactory.data.template  # noqa: F401  (registers)

    from llava_lf.seams import dataset_run, registry

    assert {seam.symbol: seam.check() for seam in registry.ALL} == {seam.symbol: [] for seam in registry.ALL}
    assert dataset_run.installed()


def test_a_seam_that_does_not_fit_names_its_feature_once_and_stops_its_run(capsys):
    from llava_lf.errors import LlavaLfError
    from llava_lf.seams import Seam, has_parameters

    def create_custom_optimizer(model, args):  # a host that changed the signature
        return None

    seams = [Seam(feature="the projector's rate (test)", symbol=f"trainer_utils.create_custom_optimizer{index}",
                  module="sys", checks=lambda: has_parameters(create_custom_optimizer,
                                                              ["model", "training_args", "finetuning_args"]))
             for index in range(2)]
    with pytest.raises(LlavaLfError, match=r"the projector's rate \(test\) needs trainer_utils.create_custom_optimizer0 "
                                          r".*takes \['model', 'args'\]"):
        seams[0].require()
    for seam in seams * 2:  # two seams of one feature, each checked twice: one line
        seam.check_and_say()
    assert capsys.readouterr().err.count("llava-lf: the projector's rate (test) is off") == 1
    broken = Seam(feature="x", symbol="y", module="sys", checks=lambda: [][1])  # a crashing check is a misfit
    assert broken.check() and "IndexError" in broken.check()[0]


def test_a_template_run_stops_by_feature_when_the_host_renames_encode(monkeypatch, tmp_path):
    """A host without `Template._encode` would skip our override (stage 1's format changed silently): loading our
    template stops instead, naming the feature and the missing method; the host's own templates still load."""
    from llamafactory.data.template import Template, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from test_templates import build_golden_processor

    from llava_lf.errors import LlavaLfError
    from llava_lf.seams import templates

    tokenizer = build_golden_processor(tmp_path / "processor").tokenizer
    monkeypatch.delattr(Template, "_encode")
    with pytest.raises(LlavaLfError, match=re.escape(f"{templates.FEATURE} needs llamafactory.data.template.Template._encode")
                                          + r".*no attribute '_encode'"):
        get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llava_plain"))
    monkeypatch.undo()
    assert get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llava_plain")).format_prefix


def test_options_that_need_a_seam_stop_at_init_when_it_does_not_fit(monkeypatch):
    from accelerate.data_loader import DataLoaderAdapter
    from transformers import TrainingArguments
    from transformers.trainer_callback import TrainerControl, TrainerState

    from llava_lf.training.callback import LlavaTrainingCallback
    from llava_lf.training.options import TrainingOptionsError

    def __init__(self, dataset, **kwargs):  # an accelerate that renamed the wrapped dataloader
        self.wrapped_dataloader = dataset

    monkeypatch.setattr(DataLoaderAdapter, "__init__", __init__)
    args = TrainingArguments(output_dir="unused", optim_args="group_by_modality=true", report_to=[], use_cpu=True)
    with pytest.raises(TrainingOptionsError, match="group_by_modality .*DataLoaderAdapter.base_dataloader"):
        LlavaTrainingCallback().on_init_end(args, TrainerState(), TrainerControl())
    args.optim_args = ""
    LlavaTrainingCallback().on_init_end(args, TrainerState(), TrainerControl())  # a run without it goes on


@pytest.mark.slow
def test_seams_of_modules_loaded_later_are_checked_when_they_load():
    """Registration checks what is loaded; the trainer's seams wait in the one after-import finder until a training
    process imports the trainer, and are checked then (a chat process never pays for importing it)."""
    code = (
        "import sys, llamafactory.data.template, llava_lf._hook as hook, llava_lf.seams as seams\n"
        "waiting = sorted(hook._pending)\n"
        "checked, check_and_say = [], seams.Seam.check_and_say\n"
        "seams.Seam.check_and_say = lambda seam: checked.append(seam.symbol) or check_and_say(seam)\n"
        "assert 'transformers.trainer' not in sys.modules\n"
        "import llamafactory.train.sft.trainer\n"
        "print(waiting); print(sorted(checked)); print(sorted(hook._pending))\n"
        "print([type(f).__module__ for f in sys.meta_path if type(f).__module__.startswith('llava_lf')])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LLAVA_LF_DISABLE_HOOK": ""})
    assert result.returncode == 0, result.stderr
    waiting, checked, still, finders = result.stdout.splitlines()[-4:]
    assert {"llamafactory.train.sft.trainer", "transformers.trainer", "llamafactory.webui.engine"} <= set(eval(waiting))
    assert {"llamafactory.train.trainer_utils.create_custom_optimizer",
            "transformers.trainer.Trainer.get_decay_parameter_names"} <= set(eval(checked))
    assert "llamafactory.train.sft.trainer" not in eval(still) and "llamafactory.webui.engine" in eval(still)
    assert eval(finders) == ["llava_lf._hook"]  # one finder waits for them all
    assert "llava-lf:" not in result.stderr


def test_compatibility_doc_lists_every_declared_seam():
    from llava_lf.seams import registry

    doc = (REPO / "docs" / "compatibility.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| `")]
    missing = [(seam.feature, seam.symbol) for seam in registry.ALL
               if not any(f"`{seam.symbol}`" in line and seam.feature.split(" (")[0] in line for line in table)]
    assert missing == []
