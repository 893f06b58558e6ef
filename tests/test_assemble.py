"""Parity of the assembled llava-hf checkpoint with its sources, on tiny real models built from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.timeout(300)

HIDDEN = 64


def build_text_model(kind: str, tokenizer, out: Path, seed: int = 0) -> Path:
    """A tiny decoder of `kind` sharing the demo tokenizer; Qwen2 ties its head to the embeddings, as Qwen2-0.5B."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        kind, vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=kind == "qwen2")
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_siglip(out: Path) -> Path:
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                                image_size=32, patch_size=8)
    SiglipVisionModel(config).save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def build_models(root: Path, tiny_parts: tuple[Path, Path]) -> dict[str, Path]:
    """The session's tiny CLIP and LLaMA plus a SigLIP, a Mistral, a tied Qwen2 and an unsupported GPT-2."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from llava_lf.demo.tiny_models import train_tokenizer

    clip, llama = tiny_parts
    tokenizer = AutoTokenizer.from_pretrained(llama)
    found = {"clip": clip, "llama": llama, "siglip": build_siglip(root / "siglip")}
    found["qwen2"] = build_text_model("qwen2", tokenizer, root / "qwen2")
    # Mistral, like the real one, comes without a pad token: the assembler must add one.
    texts = [tokenizer.decode(range(i, i + 8)) for i in range(0, len(tokenizer) - 8, 4)]
    found["mistral"] = build_text_model("mistral", train_tokenizer(texts, 300, with_pad=False), root / "mistral")
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(tokenizer))).save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    found["gpt2"] = root / "gpt2"
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_parts) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("assemble_models"), tiny_parts)


def picture(width: int = 60, height: int = 30, seed: int = 0):
    """A real, non-square RGB picture (noise, so padding and resizing both show)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def assemble_to(tmp_path: Path, **fields):
    from llava_lf.assembly import AssemblySpec, assemble_report

    return assemble_report(AssemblySpec(out=tmp_path / "llava", progress=False, **fields))


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_text_only_logits_equal_the_source_llm(tmp_path, models, kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

    report = assemble_to(tmp_path, vision=models["clip"], llm=models[kind])
    llava, info = LlavaForConditionalGeneration.from_pretrained(report.out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    source = AutoModelForCausalLM.from_pretrained(models[kind]).eval()
    tokenizer = AutoTokenizer.from_pretrained(models[kind])
    ids = torch.randint(0, len(tokenizer), (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(input_ids=ids).logits
        got = llava.eval()(input_ids=ids).logits
    assert (got[..., : expected.shape[-1]] - expected).abs().max().item() <= 1e-5
    rows = got.shape[-1]
    if tokenizer.pad_token is None:  # <image> and <pad> appended, in that order
        assert rows % 64 == 0 and rows >= len(tokenizer) + 2
        assert (report.image_token_id, report.pad_token_id) == (len(tokenizer), len(tokenizer) + 1)
    else:  # <image> appended, the source's own pad reused
        assert rows % 64 == 0 and rows >= len(tokenizer) + 1
        assert (report.image_token_id, report.pad_token_id) == (len(tokenizer), tokenizer.pad_token_id)
    assert llava.config.tie_word_embeddings == (kind == "qwen2")


@pytest.mark.parametrize(("tower", "strategy", "layer"),
                         [("clip", "default", -2), ("clip", "full", -1), ("siglip", "full", -2)])
def test_projector_input_is_the_towers_selected_layer(tmp_path, models, tower, strategy, layer):
    from transformers import AutoModel, AutoProcessor, LlavaForConditionalGeneration

    from llava_lf.common.image_tokens import image_seqlen_from_config

    report = assemble_to(tmp_path, vision=models[tower], llm=models["llama"], select_strategy=strategy,
                         vision_feature_layer=layer)
    llava = LlavaForConditionalGeneration.from_pretrained(report.out).eval()
    processor = AutoProcessor.from_pretrained(report.out)
    inputs = processor(text=["<image>\nWhat is here?"], images=[picture()], return_tensors="pt")
    seen = []
    llava.model.multi_modal_projector.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        llava(**inputs)
        states = AutoModel.from_pretrained(models[tower]).eval()(inputs["pixel_values"], output_hidden_states=True)
    selected = states.hidden_states[layer]
    if strategy == "default":
        selected = selected[:, 1:]  # CLIP's CLS token
    torch.testing.assert_close(seen[0], selected, rtol=0, atol=1e-6)
    # One image becomes as many tokens as the processor wrote, the config says, and the plugin computes.
    image_tokens = int((inputs["input_ids"] == llava.config.image_token_index).sum())
    assert image_tokens == seen[0].shape[1] == llava.config.image_seq_length == image_seqlen_from_config(processor)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_full_dual_encoder_checkpoints_give_their_vision_half(tmp_path, models, family):
    """openai/clip-vit-large-patch14-336 is a whole CLIPModel in pytorch_model.bin; its text half is left out."""
    from transformers import AutoImageProcessor, AutoModel, CLIPConfig, LlavaForConditionalGeneration, SiglipConfig

    torch.manual_seed(4)
    vision = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
    config = (CLIPConfig if family == "clip" else SiglipConfig)(vision_config=vision, text_config=text)
    full = AutoModel.from_config(config)
    source = tmp_path / family
    full.config.save_pretrained(source)
    if family == "clip":  # saved by an older transformers, with the position-id buffers it then kept
        positions = torch.arange((32 // 8) ** 2 + 1)[None]
        torch.save({**full.state_dict(), "vision_model.embeddings.position_ids": positions},
                   source / "pytorch_model.bin")
    else:
        full.save_pretrained(source)
    AutoImageProcessor.from_pretrained(models[family]).save_pretrained(source)
    if family == "clip":
        processor = AutoImageProcessor.from_pretrained(source)
        processor.size, processor.crop_size = {"shortest_edge": 32}, {"height": 32, "width": 32}
        processor.save_pretrained(source)

    report = assemble_to(tmp_path, vision=source, llm=models["llama"],
                         select_strategy="default" if family == "clip" else "full")
    tower = LlavaForConditionalGeneration.from_pretrained(report.out).model.vision_tower.state_dict()
    expected = {key.removeprefix("vision_model."): value for key, value in full.state_dict().items()
                if key.startswith("vision_model.")}
    assert tower.keys() == expected.keys()
    assert all(torch.equal(tower[key], value) for key, value in expected.items())


def test_checkpoint_is_what_transformers_writes_in_the_hubs_layout(tmp_path, models):
    """Names, dtypes and shapes as transformers saves the same model, with the tower under `vision_model.` as
    llava-hf on the hub has it (transformers 5 drops that level when saving and restores it when loading)."""
    from safetensors import safe_open
    from transformers import LlavaForConditionalGeneration

    from llava_lf.assembly.build import hub_name

    def layout(directory: Path) -> dict[str, tuple]:
        with safe_open(directory / "model.safetensors", "pt") as handle:
            names = handle.keys()
            return {hub_name(key): (handle.get_slice(key).get_dtype(), tuple(handle.get_slice(key).get_shape()))
                    for key in names}

    for kind in ("llama", "qwen2"):
        report = assemble_to(tmp_path / kind, vision=models["clip"], llm=models[kind])
        LlavaForConditionalGeneration.from_pretrained(report.out).save_pretrained(tmp_path / f"{kind}_resaved")
        assert layout(report.out) == layout(tmp_path / f"{kind}_resaved")


def test_new_embedding_rows_sit_at_the_mean(tmp_path, models):
    from safetensors.torch import load_file

    report = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], vocab_multiple=128)
    stored = load_file(models["llama"] / "model.safetensors")["model.embed_tokens.weight"]
    written = load_file(report.out / "model.safetensors")["language_model.model.embed_tokens.weight"]
    assert written.shape[0] == 512 and report.vocab_rows == (stored.shape[0], 512)
    torch.testing.assert_close(written[: stored.shape[0]], stored, rtol=0, atol=0)
    new = written[stored.shape[0]:]
    torch.testing.assert_close(new, stored.mean(0).expand_as(new), rtol=0, atol=1e-3 * stored.std().item())
    assert new.unique(dim=0).shape[0] == new.shape[0]  # a little noise keeps the rows apart


def test_pad_to_square_is_llavas_expand2square(tmp_path, models):
    from PIL import Image
    from transformers import AutoImageProcessor, AutoProcessor

    report = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], pad_to_square=True)
    processor = AutoProcessor.from_pretrained(report.out)
    image = picture(60, 30)
    clip_processor = AutoImageProcessor.from_pretrained(models["clip"])
    # LLaVA-1.5's expand2square: paste centred on a square of the CLIP mean colour, then the CLIP processor.
    background = tuple(int(x * 255) for x in clip_processor.image_mean)
    square = Image.new("RGB", (60, 60), background)
    square.paste(image, (0, 15))
    expected = clip_processor(images=square, return_tensors="pt")["pixel_values"]
    got = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    unpadded = clip_processor(images=image, return_tensors="pt")["pixel_values"]
    assert (got - unpadded).abs().max() > 0.1


@pytest.mark.parametrize(("kind", "suffix"), [("mlp2x_gelu", ".bin"), ("linear", ".safetensors")])
def test_original_projector_weights_are_loaded(tmp_path, models, kind, suffix):
    from safetensors.torch import save_file
    from transformers import LlavaForConditionalGeneration

    generator = torch.Generator().manual_seed(3)
    weights = {"model.mm_projector.0.weight": torch.randn(HIDDEN * 2, 96, generator=generator),
               "model.mm_projector.0.bias": torch.randn(HIDDEN * 2, generator=generator)}
    if kind == "mlp2x_gelu":
        weights |= {"model.mm_projector.2.weight": torch.randn(HIDDEN * 2, HIDDEN * 2, generator=generator),
                    "model.mm_projector.2.bias": torch.randn(HIDDEN * 2, generator=generator)}
    else:  # LLaVA v1 saved a bare nn.Linear
        weights = {key.replace("mm_projector.0.", "mm_projector."): value for key, value in weights.items()}
    file = tmp_path / f"mm_projector{suffix}"
    save_file(weights, file) if suffix == ".safetensors" else torch.save(weights, file)

    report = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], projector_weights=file)
    assert report.projector.startswith(kind)
    projector = LlavaForConditionalGeneration.from_pretrained(report.out).model.multi_modal_projector
    features = torch.randn(2, 9, 96, generator=generator)
    with torch.no_grad():
        got = projector(features)
        if kind == "linear":  # exact: x W^T + b, as LLaVA v1's single layer
            expected = features @ weights["model.mm_projector.weight"].T + weights["model.mm_projector.bias"]
        else:
            hidden = torch.nn.functional.gelu(features @ weights["model.mm_projector.0.weight"].T
                                              + weights["model.mm_projector.0.bias"])
            expected = hidden @ weights["model.mm_projector.2.weight"].T + weights["model.mm_projector.2.bias"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_chat_template_renders_the_training_format(tiny_llava):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    rendered = processor.apply_chat_template(conversation, tokenize=False)
    assert rendered.startswith("A chat between a curious user")  # no BOS: the tokenizer adds it
    assert processor.tokenizer(rendered)["input_ids"].count(processor.tokenizer.bos_token_id) == 1
    assert rendered.endswith("questions. USER: <image>\nWhat color? ASSISTANT: red</s>")


def test_sharded_output_and_dtype(tmp_path, models):
    from transformers import LlavaForConditionalGeneration

    report = assemble_to(tmp_path, vision=models["clip"], llm=models["llama"], dtype="bfloat16",
                         max_shard_bytes=200_000)
    index = json.loads((report.out / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((report.out / shard).is_file() for shard in shards)
    assert index["metadata"]["total_size"] == report.bytes_written
    llava = LlavaForConditionalGeneration.from_pretrained(report.out)
    assert {parameter.dtype for parameter in llava.parameters()} == {torch.bfloat16}
