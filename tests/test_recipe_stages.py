"""The shipped recipe YAMLs, run by the real `llamafactory-cli` on the tiny model (sizes overridden on the
command line as a user would): stage 1 trains only the projector; stage 2 trains LoRA and the projector, each
at its own learning rate, on modality-grouped data; a stage-2 run killed with SIGKILL after a checkpoint and
restarted with `resume_from_checkpoint` ends with exactly the weights of an uninterrupted run. The runs are
helpers/recipe_chain.py's, made once per session by the `recipe_chain` fixture (conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.recipe_chain import LR, PROJECTOR_LR, STAGE2_STEPS, Chain

pytestmark = [pytest.mark.slow, pytest.mark.host]


@pytest.fixture(scope="module")
def chain(recipe_chain) -> Chain:
    """Built once per session (conftest.recipe_chain); test_inference_serving exports and serves the same runs."""
    return recipe_chain


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {key: value for path in sorted(folder.glob("*.safetensors")) for key, value in load_file(path).items()}


def _model_state(folder: Path) -> dict:
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(folder).state_dict()


def _report(folder: Path) -> dict:
    return json.loads((folder / "llava_lf_training.json").read_text())


@pytest.mark.timeout(900)
def test_stage1_trains_only_the_projector(chain, tiny_llava):
    import torch

    before, after = _model_state(tiny_llava), _model_state(chain.stage1)
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    projector = {key for key in before if ".multi_modal_projector." in f".{key}"}
    assert changed == projector and len(projector) == 4  # both layers' weight and bias; CLIP and LLM untouched
    report = _report(chain.stage1)
    assert set(report["trainable_parameters"]) == {"projector"}
    assert {group["initial_lr"] for group in report["param_groups"]} == {1e-3}  # the YAML's stage-1 rate


@pytest.mark.timeout(900)
def test_stage2_trains_lora_and_projector_each_at_its_own_rate(chain):
    import torch

    report = _report(chain.stage2)
    assert report["options"] == {"mm_projector_lr": PROJECTOR_LR, "mm_vision_tower_lr": None, "group_by_modality": True,
                                 "recompute_layers": None,
                                 "sdpa_backend": None, "compile_layers": False}
    assert set(report["trainable_parameters"]) == {"projector", "language_model (LoRA)"}  # never the vision tower
    by_rate = {}
    for group in report["param_groups"]:
        by_rate.setdefault(group["initial_lr"], set()).update(group["modules"])
    assert by_rate == {LR: {"language_model (LoRA)"}, PROJECTOR_LR: {"projector"}}
    # The data was grouped and read in order: every micro-batch all-image or all-text, both kinds present.
    assert report["modality"]["mixed_batches"] == 0 and report["modality"]["text_batches"] >= 2
    # fa2 was asked for; without the flash-attn package the host falls back to SDPA, and says so.
    assert report["attention"]["text"] == "sdpa" and "FlashAttention-2 is not installed" in chain.stage2_log

    # The rates really applied: Adam's first step (no warmup) moves every weight by its group's full rate.
    base, first = _weights(chain.stage1), _weights(chain.stage2 / "checkpoint-1")
    projector_steps, lora_b_steps = [], []
    for key, value in first.items():
        if ".multi_modal_projector." in key:
            source = "multi_modal_projector." + key.split(".multi_modal_projector.")[1]
            projector_steps.append((value - base[source]).abs().max().item())
        elif ".lora_B." in key:  # starts at zero
            lora_b_steps.append(value.abs().max().item())
    assert len(projector_steps) == 4 and len(lora_b_steps) == 14
    assert all(step == pytest.approx(PROJECTOR_LR, rel=0.01) for step in projector_steps)
    assert all(step == pytest.approx(LR, rel=0.01) for step in lora_b_steps)

    final = _weights(chain.stage2)  # the adapter: LoRA and the whole projector, nothing of CLIP or the LLM itself
    assert all(".lora_" in key or ".multi_modal_projector." in key for key in final)
    assert not any("vision_tower" in key for key in final)
    moved_a = [key for key in final if ".lora_A." in key and not torch.equal(final[key], first[key])]
    assert len(moved_a) == 14  # LoRA A trains from step 2 on, once B is no longer zero


@pytest.mark.timeout(900)
def test_killed_stage2_resumes_to_the_same_weights(chain):
    import torch

    # The victim was killed after checkpoint-2, before it could finish: no final adapter, no last checkpoint.
    assert "checkpoint-2" in chain.checkpoints_at_kill
    assert f"checkpoint-{STAGE2_STEPS}" not in chain.checkpoints_at_kill
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in chain.resumed_log
    assert _report(chain.killed)["global_step_at_start"] == 2
    resumed, uninterrupted = _weights(chain.killed), _weights(chain.stage2)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    states = [json.loads((run / "trainer_state.json").read_text())["log_history"] for run in (chain.killed, chain.stage2)]
    losses = [[entry["loss"] for entry in history if "loss" in entry] for history in states]
    assert losses[0][-STAGE2_STEPS + 2:] == losses[1][-STAGE2_STEPS + 2:]  # steps 3..6 saw the same batches
