"""A random LLaVA-1.5-shaped checkpoint (CLIP tower, mlp2x_gelu projector, LLaMA), built from config.

Run as its own process (`python -m speed.model OUT --shape 7b`), so the process that orchestrates the
benchmark never initialises CUDA: the training runs are then the GPU's only users, and no later
`datasets.map` forks a process that holds a CUDA context.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
# Picture-caption words, the only words of the synthetic samples (see data.word_cycle).
WORDS = ("the", "a", "red", "blue", "green", "small", "large", "man", "woman", "dog", "cat", "table", "street",
         "car", "tree", "sky", "person", "holding", "standing", "sitting", "near", "next", "to", "on", "under",
         "behind", "front", "image", "shows", "picture", "scene", "there", "is", "are", "what", "color", "how",
         "many", "where", "why", "describe", "detail", "people", "building", "window", "road", "sign", "light")
SYSTEM_TEXT = "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:"


@dataclass(frozen=True)
class Shape:
    """Every dimension of the model, explicit; `vocab_size=None` means the tokenizer's own size."""

    name: str
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    vocab_size: int | None

    @property
    def image_tokens(self) -> int:
        """Tokens per image in the language model (the `default` strategy drops CLS)."""
        return (self.image_size // self.patch_size) ** 2


SHAPES: dict[str, Shape] = {
    # LLaVA-1.5-7B: CLIP ViT-L/14-336 (576 image tokens), LLaMA-7B / Vicuna-7B, the llava-hf vocabulary.
    "7b": Shape("7b", image_size=336, patch_size=14, vision_hidden=1024, vision_intermediate=4096, vision_layers=24,
                vision_heads=16, text_hidden=4096, text_intermediate=11008, text_layers=32, text_heads=32,
                vocab_size=32064),
    # The same layout at CPU-test size: 16 image tokens, 2+2 layers.
    "tiny": Shape("tiny", image_size=56, patch_size=14, vision_hidden=64, vision_intermediate=128, vision_layers=2,
                  vision_heads=2, text_hidden=128, text_intermediate=256, text_layers=2, text_heads=4,
                  vocab_size=None),
}


@dataclass(frozen=True)
class ModelFacts:
    """What the MFU arithmetic needs, counted on the built model before any adapter is added."""

    shape: str
    llm_params: int  # language model + lm_head (embeddings included, as PERFORMANCE.md counts N)
    vision_params: int
    projector_params: int
    text_layers: int
    text_hidden: int
    image_tokens: int
    image_size: int
    vocab_size: int

    @classmethod
    def read(cls, path: Path) -> ModelFacts:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def train_tokenizer():
    """A byte-level BPE over the caption words, with LLaMA's specials plus `<image>` and `<pad>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(2000)] + [SYSTEM_TEXT] * 20
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>", PAD_TOKEN, IMAGE_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token=PAD_TOKEN, additional_special_tokens=[IMAGE_TOKEN])


def llava_config(shape: Shape, tokenizer):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
                              num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
                              image_size=shape.image_size, patch_size=shape.patch_size,
                              projection_dim=min(768, shape.vision_hidden))
    text = LlamaConfig(vocab_size=shape.vocab_size or len(tokenizer), hidden_size=shape.text_hidden,
                       intermediate_size=shape.text_intermediate, num_hidden_layers=shape.text_layers,
                       num_attention_heads=shape.text_heads, num_key_value_heads=shape.text_heads,
                       max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=False)
    # LLaVA-1.5: features of the second-last CLIP layer without CLS, a two-layer GELU MLP projector.
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(
        IMAGE_TOKEN), image_seq_length=shape.image_tokens, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu")


def count_facts(model, shape: Shape) -> ModelFacts:
    def total(*parts: str) -> int:
        return sum(p.numel() for name, p in model.named_parameters() if any(part in name for part in parts))

    return ModelFacts(shape=shape.name, llm_params=total("language_model", "lm_head"),
                      vision_params=total("vision_tower"), projector_params=total("multi_modal_projector"),
                      text_layers=shape.text_layers, text_hidden=shape.text_hidden, image_tokens=shape.image_tokens,
                      image_size=shape.image_size, vocab_size=model.config.text_config.vocab_size)


def facts_without_weights(shape: Shape) -> ModelFacts:
    """Parameter counts from a model on the meta device: exact, instant, no memory."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config(shape, train_tokenizer()))
    return count_facts(model, shape)


def build(shape: Shape, out: Path, seed: int = 0) -> ModelFacts:
    """Save a random-weight llava-hf checkpoint with its processor to `out`; bf16 on a GPU, fp32 on CPU."""
    import torch
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = train_tokenizer()
    side = shape.image_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer, patch_size=shape.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1)
    on_gpu = torch.cuda.is_available()
    torch.manual_seed(seed)
    with torch.device("cuda" if on_gpu else "cpu"):  # random init of 7B parameters takes seconds on a GPU
        model = LlavaForConditionalGeneration._from_config(llava_config(shape, tokenizer),
                                                           dtype=torch.bfloat16 if on_gpu else torch.float32)
    facts = count_facts(model, shape)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "bench_facts.json").write_text(json.dumps(asdict(facts), indent=1), encoding="utf-8")
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    facts = build(SHAPES[args.shape], args.out, args.seed)
    print(f"built {args.shape} model in {time.perf_counter() - started:.1f}s: language model "
          f"{facts.llm_params / 1e6:,.1f}M, vision {facts.vision_params / 1e6:.1f}M, "
          f"projector {facts.projector_params / 1e6:.1f}M parameters", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
