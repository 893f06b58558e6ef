"""The plugin's training options: strict parsing, the projector's own param groups (and their resumable
state), the modality-grouped order and its check, and `llava-lf group-modality` on a real converted dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import BIN
from helpers.cli import llava_lf

from llava_lf.training.modality import check_grouping, grouped_order
from llava_lf.training.options import TrainingOptions, TrainingOptionsError, parse_training_options

pytestmark = pytest.mark.host

# ---- options -------------------------------------------------------------------------------------------------

def test_options_parse_from_optim_args():
    options = parse_training_options(" mm_projector_lr=2.0e-5, group_by_modality=TRUE", "adamw_torch")
    assert options == TrainingOptions(mm_projector_lr=2e-5, group_by_modality=True)
    assert parse_training_options("group_by_modality=true,mm_projector_lr=2e-05", "adamw_torch") == options
    assert not parse_training_options(None, "adamw_torch").active
    # Keys the chosen optimizer reads itself pass through next to ours.
    assert parse_training_options("momentum=0.9,mm_projector_lr=1e-4", "sgd").mm_projector_lr == 1e-4


def test_every_bad_option_is_reported_at_once_with_its_fix():
    with pytest.raises(TrainingOptionsError) as caught:
        parse_training_options("mm_projector_lr=fast,group_by_modality=maybe,mm_projektor_lr=1e-5,oops", "adamw_torch")
    problems = caught.value.problems
    assert len(problems) == 4
    text = str(caught.value)
    assert "mm_projector_lr='fast' is not a positive number; write e.g. mm_projector_lr=2.0e-5" in text
    assert "group_by_modality='maybe' is not a boolean" in text
    assert "'oops' is not key=value" in text
    assert "mm_projektor_lr are not llava_lf options and optim=adamw_torch reads none" in text
    assert "valid llava_lf options are mm_projector_lr" in text


@pytest.mark.parametrize("value", ["0", "-1e-5", "inf", "nan"])
def test_projector_lr_must_be_positive_and_finite(value):
    with pytest.raises(TrainingOptionsError, match="not a positive number"):
        parse_training_options(f"mm_projector_lr={value}", "adamw_torch")


def test_options_refused_with_an_optimizer_that_takes_optim_args_as_kwargs():
    with pytest.raises(TrainingOptionsError, match="optim=rmsprop_bnb passes optim_args on to the optimizer"):
        parse_training_options("mm_projector_lr=2e-5", "rmsprop_bnb")


@pytest.mark.parametrize("optim", ["adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"])
def test_projector_lr_refused_with_8bit_optimizers_naming_the_fix(optim):
    """transformers keeps embeddings' 8-bit optimizer state in 32 bits; our projector optimizer would not."""
    with pytest.raises(TrainingOptionsError, match=f"mm_projector_lr cannot be used with optim={optim}.*adamw_torch"):
        parse_training_options("mm_projector_lr=2e-5", optim)
    assert parse_training_options("group_by_modality=true", optim).group_by_modality  # only the projector rate


@pytest.mark.slow  # a fresh interpreter that loads the host: ~6 s
def test_report_to_llava_lf_fails_loudly_without_the_plugin():
    # A YAML naming our callback in an environment where the plugin is off must not train differently in silence.
    code = ("from transformers.integrations.integration_utils import get_reporting_integration_callbacks as get\n"
            "import llamafactory.data.template\n"
            "get(['llava_lf'])")
    env = {**os.environ, "LLAVA_LF_DISABLE_HOOK": "1"}
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    assert result.returncode != 0
    assert "llava_lf is not supported" in result.stderr


def test_the_hook_registers_the_callback_for_report_to():
    import llamafactory.data.template  # noqa: F401  (the import hook registers on this import)
    from transformers.integrations.integration_utils import get_reporting_integration_callbacks

    from llava_lf.training.callback import LlavaTrainingCallback

    assert get_reporting_integration_callbacks(["llava_lf"]) == [LlavaTrainingCallback]


@pytest.fixture
def host_optimizer():
    """The host's own `create_custom_optimizer` before and after the test: what a run wraps does not outlive it."""
    from llava_lf.seams import optimizer as optimizer_seam

    optimizer_seam.uninstall()
    yield optimizer_seam
    optimizer_seam.uninstall()


def test_callback_accepts_projector_lr_under_deepspeed_and_wraps_the_host_seam(host_optimizer):
    """The projector's groups now exist from optimizer creation, so ZeRO may take them over."""
    import llamafactory.train.sft.trainer as sft_trainer
    from transformers import TrainingArguments
    from transformers.trainer_callback import TrainerControl, TrainerState

    from llava_lf.training.callback import LlavaTrainingCallback

    assert not host_optimizer.installed(sft_trainer)
    args = TrainingArguments(output_dir="unused", optim_args="mm_projector_lr=2e-5", report_to=[], use_cpu=True)
    args.deepspeed = "yaml/deepspeed/ds_z3_config.json"  # set after init: DeepSpeed itself is not installed here
    LlavaTrainingCallback().on_init_end(args, TrainerState(), TrainerControl())
    assert host_optimizer.installed(sft_trainer)


# ---- modality grouping ---------------------------------------------------------------------------------------

def test_grouped_order_is_a_permutation_of_homogeneous_chunks():
    has_image = [index % 7 != 0 for index in range(1000)]  # 142 text-only rows scattered among images
    grouping = grouped_order(has_image, batch=32, seed=3)
    assert sorted(grouping.order) == list(range(1000))  # nothing dropped, nothing repeated
    ordered = [has_image[index] for index in grouping.order]
    assert (grouping.image_batches, grouping.text_batches, grouping.tail) == (26, 4, 1000 - 30 * 32)
    for start in range(0, 30 * 32, 32):
        assert len(set(ordered[start:start + 32])) == 1
    for micro in (1, 2, 4, 8, 16, 32):  # every micro-batch size dividing the chunk sees one modality
        assert check_grouping(ordered, micro).grouped
    assert grouped_order(has_image, 32, seed=3).order == grouping.order
    assert grouped_order(has_image, 32, seed=4).order != grouping.order


def test_grouping_check_counts_mixed_micro_batches():
    check = check_grouping([True, True, False, True, False, False, True, False, True], micro_batch=2)
    assert (check.image_batches, check.text_batches, check.mixed_batches) == (2, 1, [1, 3])
    assert not check.grouped
    assert check_grouping([True] * 5 + [False] * 3, micro_batch=4).grouped  # one mixed batch: the tail


def _dataloader(rows: list[bool], shuffle: bool):
    from torch.utils import data

    from datasets import Dataset

    dataset = Dataset.from_dict({"images": [["a.png"] if flag else [] for flag in rows], "x": list(range(len(rows)))})
    return data.DataLoader(dataset, batch_size=4, shuffle=shuffle, collate_fn=lambda batch: batch)


def test_modality_check_refuses_shuffled_or_ungrouped_data():
    from transformers import TrainingArguments

    from llava_lf.training.callback import _check_modality_order

    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=4, report_to=[], use_cpu=True)
    grouped = [True] * 16 + [False] * 8 + [True] * 3
    report = _check_modality_order(args, _dataloader(grouped, shuffle=False))
    assert (report["image_batches"], report["text_batches"], report["mixed_batches"]) == (5, 2, 0)  # 4 + short
    with pytest.raises(TrainingOptionsError, match="read in shuffled order.*disable_shuffling: true"):
        _check_modality_order(args, _dataloader(grouped, shuffle=True))
    interleaved = [index % 3 == 0 for index in range(24)]
    with pytest.raises(TrainingOptionsError, match="6 of 6 micro-batches of 4 mix image and text-only rows"):
        _check_modality_order(args, _dataloader(interleaved, shuffle=False))


# ---- llava-lf group-modality ---------------------------------------------------------------------------------

def _converted_mixed(tmp_path, demo_data) -> tuple:
    from llava_lf.data.convert import convert_file

    data, _ = demo_data
    records = json.loads(data.instruct_json.read_text())[:30]
    records += [{"id": f"text-{index}", "conversations": [{"from": "human", "value": f"Say a colour ({index})."},
                                                          {"from": "gpt", "value": "red"}]} for index in range(10)]
    source = tmp_path / "mixed.json"
    source.write_text(json.dumps(records))
    convert_file(source, data.image_dir, tmp_path / "datasets", "mixed")
    return tmp_path / "datasets", records


def test_group_modality_cli_writes_and_registers_every_row(tmp_path, demo_data):
    datasets, records = _converted_mixed(tmp_path, demo_data)
    command = ["group-modality", "--dataset-dir", datasets, "--name", "mixed", "--batch", "8", "--seed", "1"]
    result = llava_lf(*command)  # in process (helpers/cli.py)
    assert result.returncode == 0, result.stderr
    assert "40 rows (30 with images, 10 text-only)" in result.stdout
    info = json.loads((datasets / "dataset_info.json").read_text())
    assert info["mixed_grouped"] == {**info["mixed"], "file_name": "mixed_grouped.jsonl"}
    rows = [json.loads(line) for line in (datasets / "mixed_grouped.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(record["id"] for record in records)
    assert check_grouping([bool(row["images"]) for row in rows], 8).grouped
    assert [bool(row["images"]) for row in rows[:8]] in ([True] * 8, [False] * 8)

    missing = llava_lf(*command[:4], "nope")
    assert missing.returncode == 2
    assert "dataset 'nope' is not in" in missing.stderr and "registered: mixed, mixed_grouped" in missing.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
