"""`llava-lf assemble`: a vision tower, a projector (fresh or LLaVA's stage-1 file) and a causal LM."""

from __future__ import annotations

from .build import AssemblyReport, Recipe, StoredWeights, build_checkpoint, check_destination
from .generation import load_generation_config
from .language import check_text_type, finish_text, llm_key, load_tokenizer
from .next import check_grids
from .projector import fresh, read_original
from .spec import CHAT_FORMATS, DTYPE_NAMES, PROJECTOR_KINDS, SELECT_STRATEGIES, AssemblyError, AssemblySpec
from .tensor_files import weight_source
from .vision import load_vision, read_config, tower_key


def check_spec(spec: AssemblySpec) -> list[str]:
    """Problems with the choices themselves (programmatic callers skip argparse's checks)."""
    problems = []
    if spec.projector is not None and spec.projector not in PROJECTOR_KINDS:
        problems.append(f"projector {spec.projector!r}: choose one of {', '.join(PROJECTOR_KINDS)}")
    if spec.select_strategy not in SELECT_STRATEGIES:
        problems.append(f"select_strategy {spec.select_strategy!r}: choose one of {', '.join(SELECT_STRATEGIES)}")
    if spec.dtype not in DTYPE_NAMES:
        problems.append(f"dtype {spec.dtype!r}: choose one of {', '.join(DTYPE_NAMES)}")
    if spec.chat_format not in CHAT_FORMATS:
        problems.append(f"chat_format {spec.chat_format!r}: choose one of {', '.join(CHAT_FORMATS)}")
    problems += check_grids(spec.anyres_grids, "anyres_grids")
    if spec.vocab_multiple < 1:
        problems.append(f"vocab_multiple {spec.vocab_multiple}: must be at least 1 (llava-hf uses 64)")
    if spec.projector_weights is not None and not spec.projector_weights.is_file():
        problems.append(f"--projector-weights {spec.projector_weights}: no such file; give LLaVA's stage-1 "
                        "mm_projector.bin (or .safetensors)")
    return problems


def assemble_parts(spec: AssemblySpec) -> AssemblyReport:
    from transformers import AutoConfig

    problems = check_spec(spec)
    if problems:
        raise AssemblyError("\n".join(problems))
    inputs = [spec.vision, spec.llm] + ([spec.projector_weights] if spec.projector_weights else [])
    check_destination(spec.out, inputs)

    vision = load_vision(spec.vision, spec.pad_to_square)
    raw = read_config(spec.llm, "--llm")
    if "vision_config" in raw or "mm_vision_tower" in raw:
        raise AssemblyError(f"--llm {spec.llm}: is a multimodal checkpoint; give the language model alone "
                            "(for an original LLaVA checkpoint use `llava-lf import-llava`)")
    check_text_type(raw.get("model_type"), spec.llm / "config.json")
    text_config = AutoConfig.from_pretrained(spec.llm)
    text = finish_text(text_config, load_tokenizer(spec.llm, "--llm"),
                       load_generation_config(spec.llm, text_config, "--llm"), spec.vocab_multiple, f"--llm {spec.llm}",
                       spec.chat_format)

    if spec.projector_weights is not None:
        source = weight_source(spec.projector_weights, f"--projector-weights {spec.projector_weights}")
        projector = read_original(source, spec.projector)
    else:
        projector = fresh(spec.projector or "mlp2x_gelu", vision.config.hidden_size, text.config.hidden_size, spec.seed)
    stored = StoredWeights(vision=weight_source(spec.vision, f"--vision {spec.vision}"), vision_key=tower_key,
                           text=weight_source(spec.llm, f"--llm {spec.llm}"), text_key=llm_key)
    recipe = Recipe(projector=projector.kind, vision_feature_layer=spec.vision_feature_layer,
                    select_strategy=spec.select_strategy, pad_to_square=spec.pad_to_square, dtype=spec.dtype,
                    vocab_multiple=spec.vocab_multiple, seed=spec.seed, max_shard_bytes=spec.max_shard_bytes,
                    progress=spec.progress, anyres_grids=spec.anyres_grids, chat_format=spec.chat_format)
    return build_checkpoint(vision, text, projector, stored, recipe, spec.out)
