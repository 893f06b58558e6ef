"""Stage-2 speed options, each checked on CPU against the option off on a tiny real LLaMA built from config.

Tolerances: options that leave the math unchanged (partial recompute) must give bit-identical losses and
gradients; kernel choices (SDPA math / flash vs eager attention, a compiled layer vs eager) must agree
within 1e-5 absolute on float32 losses and 1e-4 relative on gradients. Packing is the host's
`packing: true` + `neat_packing: true`: its block-diagonal mask and per-sample positions must give each
packed sample exactly the logits it gets alone (1e-5)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from llava_lf.errors import LlavaLfError
from llava_lf.training.options import TrainingOptionsError, parse_training_options
from llava_lf.training.speed import (
    compile_decoder_layers,
    decoder_layers,
    recompute_only_first,
    sdpa_backends,
    select_sdpa,
)

pytestmark = pytest.mark.host

LOSS_ATOL, GRAD_RTOL = 1e-5, 1e-4


def _tiny_llama(attention: str = "sdpa", layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=96, attn_implementation=attention)
    return LlamaForCausalLM(config).train()


def _batch(length: int = 12, rows: int = 2, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(0, 96, (rows, length))


def _loss_and_grads(model, ids, **kwargs):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids, **kwargs).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_speed_options_parse_and_are_off_by_default():
    assert parse_training_options("", "adamw_torch").as_dict() == {
        "mm_projector_lr": None, "group_by_modality": False, "recompute_layers": None, "sdpa_backend": None,
        "compile_layers": False}
    options = parse_training_options("recompute_layers=8,sdpa_backend=Flash,compile_layers=true", "adamw_torch")
    assert (options.recompute_layers, options.sdpa_backend, options.compile_layers) == (8, "flash", True)
    with pytest.raises(TrainingOptionsError) as error:
        parse_training_options("recompute_layers=-1,sdpa_backend=fast,compile_layers=maybe", "adamw_torch")
    assert len(error.value.problems) == 3 and "not one of flash, cudnn, efficient, math" in str(error.value)


def test_partial_recompute_keeps_losses_and_gradients_bit_for_bit():
    full, partial = _tiny_llama(), _tiny_llama()
    for model in (full, partial):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert recompute_only_first(partial, 1) == 1
    assert [layer.gradient_checkpointing for layer in decoder_layers(partial)] == [True, False, False]
    ids = _batch()
    (loss_a, grads_a), (loss_b, grads_b) = _loss_and_grads(full, ids), _loss_and_grads(partial, ids)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(grads_a[name], grads_b[name]) for name in grads_a)
    with pytest.raises(LlavaLfError, match="gradient checkpointing is off"):
        recompute_only_first(_tiny_llama(), 1)


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_sdpa_kernel_matches_eager_attention(backend):
    eager, sdpa = _tiny_llama("eager"), _tiny_llama("sdpa")
    ids = _batch()
    loss_a, grads_a = _loss_and_grads(eager, ids)
    with contextlib.ExitStack() as stack:
        assert select_sdpa(backend, sdpa.config, "cpu", stack) == backend
        loss_b, grads_b = _loss_and_grads(sdpa, ids)
    assert abs(loss_a.item() - loss_b.item()) < LOSS_ATOL
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=GRAD_RTOL, atol=1e-6)


def test_sdpa_selection_refuses_what_cannot_run():
    with pytest.raises(LlavaLfError, match="needs SDPA attention, and the model uses eager"):
        select_sdpa("flash", _tiny_llama("eager").config, "cpu", contextlib.ExitStack())
    with pytest.raises(LlavaLfError, match="cudnn needs a CUDA device"):
        sdpa_backends("cudnn", "cpu")
    from torch.nn.attention import SDPBackend

    assert sdpa_backends("cudnn", "cuda") == [SDPBackend.CUDNN_ATTENTION]
    assert sdpa_backends("flash", "cuda") == [SDPBackend.FLASH_ATTENTION]


def test_neat_packing_gives_each_sample_its_own_attention_and_positions():
    """The host's packed layout: mask values = sample index (1, 2, ...), positions restart per sample."""
    from llamafactory.data.collator import prepare_4d_attention_mask

    model = _tiny_llama("sdpa").eval()
    first, second = _batch(7, 1, seed=2), _batch(5, 1, seed=3)
    packed = torch.cat([first, second], dim=1)
    indices = torch.tensor([[1] * 7 + [2] * 5])
    positions = torch.tensor([list(range(7)) + list(range(5))])
    with torch.no_grad():
        mask = prepare_4d_attention_mask(indices, torch.float32)
        together = model(input_ids=packed, attention_mask=mask, position_ids=positions).logits
        alone = torch.cat([model(input_ids=first).logits, model(input_ids=second).logits], dim=1)
    torch.testing.assert_close(together, alone, atol=LOSS_ATOL, rtol=0)


@pytest.mark.timeout(120)
def test_regional_compile_matches_eager():
    """CPU check with the `aot_eager` backend (graph capture + AOTAutograd, no C++ codegen): inductor's
    compile of even a tiny layer takes minutes on two shared cores, so the kernels are left to the GPU run."""
    eager, compiled = _tiny_llama(), _tiny_llama()
    assert compile_decoder_layers(compiled, backend="aot_eager") == 3
    ids = _batch()
    (loss_a, grads_a), (loss_b, grads_b) = _loss_and_grads(eager, ids), _loss_and_grads(compiled, ids)
    assert abs(loss_a.item() - loss_b.item()) < LOSS_ATOL
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=GRAD_RTOL, atol=1e-6)
