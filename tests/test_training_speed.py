"""Stage-2 speed options, each checked on CPU against the option off on a tiny real LLaMA built from config, and
each shown to be in force: the layers that still recompute, the one SDPA kernel that runs (and the call it
refuses instead of falling back), the layers that went through the compiler; in a LLaVA model they are the
language model's layers, never the vision tower's.

Tolerances: options that leave the math unchanged (partial recompute) must give bit-identical losses and
gradients; kernel choices (SDPA math / flash vs eager attention, a compiled layer vs eager) must agree
within 1e-5 absolute on float32 losses and 1e-4 relative on gradients. Packing is the host's
`packing: true` + `neat_packing: true` applied to our llava_v1 samples (image and text-only): each keeps all
its image tokens, and the block-diagonal mask and per-sample positions give it exactly the logits it gets
alone (1e-5)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from llava_lf.errors import LlavaLfError
from llava_lf.training.options import TrainingOptions, TrainingOptionsError, parse_training_options
from llava_lf.training.speed import (
    AppliedSpeedOptions,
    apply_speed_options,
    compile_decoder_layers,
    decoder_layers,
    recompute_only_first,
    sdpa_backends,
    select_sdpa,
)

pytestmark = pytest.mark.host

LOSS_ATOL, GRAD_RTOL = 1e-5, 1e-4
# The aten kernel each backend runs on CPU (what an unrestricted SDPA call picks there: flash).
CPU_KERNELS = {"math": "aten::_scaled_dot_product_attention_math",
               "flash": "aten::_scaled_dot_product_flash_attention_for_cpu"}


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


def _sdpa_kernels(run) -> set[str]:
    """The SDPA kernels (aten ops) that `run()` called."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        run()
    return {event.name for event in recorded.events() if event.name in CPU_KERNELS.values()}


def _attention(value_dim: int = 8):
    """One SDPA call; with value_dim != 8 (the query's), the CPU flash kernel cannot serve it (math can)."""
    import torch.nn.functional as F

    query, key, value = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, value_dim)
    return F.scaled_dot_product_attention(query, key, value, is_causal=True)


def _tiny_llava(vision_layers: int = 4, text_layers: int = 2):
    """A LLaVA whose vision tower has more layers than its language model (the longest list is not the LLM's)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers,
                              num_attention_heads=4, image_size=32, patch_size=16)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=text_layers, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=96)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=95)
    config._attn_implementation = "sdpa"
    return LlavaForConditionalGeneration(config).train()


def test_speed_options_parse_and_are_off_by_default():
    assert parse_training_options("", "adamw_torch").as_dict() == {
        "mm_projector_lr": None, "mm_vision_tower_lr": None, "group_by_modality": False, "recompute_layers": None, "sdpa_backend": None,
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
        kernels = _sdpa_kernels(lambda: _loss_and_grads(sdpa, ids))
        loss_b, grads_b = _loss_and_grads(sdpa, ids)
        # Only that kernel ran; a call it cannot serve raises instead of falling back (math serves every call).
        if backend == "flash":
            with pytest.raises(RuntimeError, match="No available kernel"):
                _attention(value_dim=16)
        else:
            assert _sdpa_kernels(lambda: _attention(value_dim=16)) == {CPU_KERNELS["math"]}
    assert kernels == {CPU_KERNELS[backend]}
    assert abs(loss_a.item() - loss_b.item()) < LOSS_ATOL
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=GRAD_RTOL, atol=1e-6)
    # The choice lasts until the stack closes: PyTorch picks again, and falls back where flash cannot serve.
    assert _sdpa_kernels(_attention) == {CPU_KERNELS["flash"]}
    assert _sdpa_kernels(lambda: _attention(value_dim=16)) == {CPU_KERNELS["math"]}


def test_sdpa_selection_refuses_what_cannot_run():
    with pytest.raises(LlavaLfError, match="needs SDPA attention, and the model uses eager"):
        select_sdpa("flash", _tiny_llama("eager").config, "cpu", contextlib.ExitStack())
    with pytest.raises(LlavaLfError, match="cudnn needs a CUDA device"):
        sdpa_backends("cudnn", "cpu")
    from torch.nn.attention import SDPBackend

    assert sdpa_backends("cudnn", "cuda") == [SDPBackend.CUDNN_ATTENTION]
    assert sdpa_backends("flash", "cuda") == [SDPBackend.FLASH_ATTENTION]


def test_neat_packing_keeps_our_samples_whole_with_their_own_attention_and_positions(tiny_llava):
    """The host's packer (`packing: true`, `neat_packing: true`) over samples our llava_v1 template and mm plugin
    encode: each sample's tokens, all its image tokens included, come whole; mask values = sample index (1, 2,
    ...), positions restart per sample, and each sample's logits in the pack equal its logits alone."""
    from helpers.host_runs import bound_to_run
    from llamafactory.data.collator import prepare_4d_attention_mask
    from llamafactory.data.processor.supervised import PackedSupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_llava)
    tokenizer, cutoff_len = processor.tokenizer, 160
    data_args = DataArguments(template="llava_v1", cutoff_len=cutoff_len, packing=True, neat_packing=True)
    template = bound_to_run(get_template_and_fix_tokenizer(tokenizer, data_args), cutoff_len)
    red, blue = Image.new("RGB", (40, 56), (200, 30, 30)), Image.new("RGB", (48, 48), (20, 30, 200))
    chat = lambda question, answer: [{"role": "user", "content": question},  # noqa: E731
                                     {"role": "assistant", "content": answer}]
    samples = [(chat("<image>\nWhat colour is it?", "red"), [red]), (chat("Name a shape.", "a circle"), []),
               (chat("What is here?\n<image>", "blue"), [blue])]
    packer = PackedSupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=processor,
                                              data_args=data_args)
    packed = packer.preprocess_dataset({
        "_prompt": [turns[:-1] for turns, _ in samples], "_response": [turns[-1:] for turns, _ in samples],
        "_system": [""] * 3, "_tools": [""] * 3, "_images": [images for _, images in samples],
        "_videos": [[]] * 3, "_audios": [[]] * 3})
    alone = [packer._encode_data_example(prompt=turns[:-1], response=turns[-1:], system="", tools="", images=images,
                                         videos=[], audios=[])[0] for turns, images in samples]
    assert len(packed["input_ids"]) == 1  # all three in one pack
    ids, indices, positions = packed["input_ids"][0], packed["attention_mask"][0], packed["position_ids"][0]
    segments = [[token for token, index in zip(ids, indices) if index == n] for n in range(1, 4)]
    assert sorted(map(tuple, segments)) == sorted(map(tuple, alone))  # each sample whole, as it encodes alone
    order = [alone.index(segment) for segment in segments]
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    assert [segment.count(image_token) for segment in segments] == [9 * len(samples[k][1]) for k in order]
    assert packed["images"][0] == [image for k in order for image in samples[k][1]]
    assert positions[:sum(map(len, segments))] == [p for segment in segments for p in range(len(segment))]

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava).eval()
    pixels = lambda images: processor.image_processor(images=images, return_tensors="pt")["pixel_values"]  # noqa: E731
    with torch.no_grad():
        together = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions]),
                         attention_mask=prepare_4d_attention_mask(torch.tensor([indices]), torch.float32),
                         pixel_values=pixels(packed["images"][0])).logits[0]
        start = 0
        for segment, k in zip(segments, order):
            images = {"pixel_values": pixels(samples[k][1])} if samples[k][1] else {}
            one = model(input_ids=torch.tensor([segment]), **images).logits[0]
            torch.testing.assert_close(together[start:start + len(segment)], one, atol=LOSS_ATOL, rtol=0)
            start += len(segment)


@pytest.mark.timeout(120)
def test_regional_compile_matches_eager():
    """CPU check with the `aot_eager` backend (graph capture + AOTAutograd, no C++ codegen): inductor's
    compile of even a tiny layer takes minutes on two shared cores, so the kernels are left to the GPU run."""
    from torch._dynamo import lookup_backend

    graphs = []

    def aot_eager(graph, example_inputs):  # `aot_eager`, recording what reaches the compiler
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)

    eager, compiled = _tiny_llama(), _tiny_llama()
    assert compile_decoder_layers(compiled, backend=aot_eager) == 3
    ids = _batch()
    (loss_a, grads_a), (loss_b, grads_b) = _loss_and_grads(eager, ids), _loss_and_grads(compiled, ids)
    assert abs(loss_a.item() - loss_b.item()) < LOSS_ATOL
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=GRAD_RTOL, atol=1e-6)
    # The layers went through the compiler, and only they: no graph holds the embedding or the LM head.
    assert graphs
    captured = "\n".join(str(graph.graph) for graph in graphs)
    assert "self_attn" in captured and "embed_tokens" not in captured and "lm_head" not in captured


def test_options_apply_to_the_language_models_layers_not_the_vision_towers():
    """In a LLaVA model (a vision tower with more layers than the LLM) our options reach the LLM's decoder layers
    only; with none set, nothing changes and the callback's report shows only the layer count."""
    model = _tiny_llava(vision_layers=4, text_layers=2)
    layers = decoder_layers(model)
    assert layers == list(model.model.language_model.layers)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    vision = next(list(module) for name, module in model.named_modules()
                  if "vision_tower" in name and name.split(".")[-1] == "layers")
    assert len(vision) == 4 and all(layer.gradient_checkpointing for layer in vision)
    before = [layer.gradient_checkpointing for layer in vision]
    with contextlib.ExitStack() as stack:
        assert apply_speed_options(TrainingOptions(), model, "cpu", stack) == AppliedSpeedOptions(decoder_layers=2)
        assert [layer.gradient_checkpointing for layer in layers] == [True, True]
        applied = apply_speed_options(TrainingOptions(recompute_layers=1, sdpa_backend="math"), model, "cpu", stack)
        assert applied == AppliedSpeedOptions(recomputed_layers=1, decoder_layers=2, sdpa_backend="math")
        assert [layer.gradient_checkpointing for layer in layers] == [True, False]
        assert [layer.gradient_checkpointing for layer in vision] == before  # the tower keeps its own setting
        assert _sdpa_kernels(_attention) == {CPU_KERNELS["math"]}  # in force until the stack closes
    assert _sdpa_kernels(_attention) == {CPU_KERNELS["flash"]}
