"""Write a llava-hf checkpoint from resolved parts, one tensor at a time, into a staging directory that
replaces `out` only once everything is on disk.

Expected names and shapes come from HF Llava (or LlavaNext) itself, built on the meta device (no memory); saved
names are the hub's llava-hf layout (`language_model.model.*`, `language_model.lm_head.weight`,
`multi_modal_projector.*`, `vision_tower.vision_model.*`, NeXT's `image_newline`), which transformers 4.x reads as
is and 5.x through its key mapping.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from llava_lf.common.image_tokens import image_seqlen_from_config
from llava_lf.formats import IMAGE_TOKEN

from .chat_templates import chat_template
from .language import TextPart, grow_rows
from .next import (
    NEWLINE_KEY,
    check_next_choices,
    fresh_newline,
    next_config,
    next_image_processor,
    next_processor,
    split_processor_files,
)
from .projector import ACTIVATIONS, ProjectorWeights, check_shapes
from .publish import publish, recover, staging_dir
from .spec import AssemblyError, DtypeName, ProjectorKind, SelectStrategy
from .tensor_files import PlannedTensor, WeightSource, write_safetensors
from .vision import VisionPart, check_choices

MAX_LISTED = 8  # problems of one kind listed before "... and N more"
VOCAB_KEYS = ("model.language_model.embed_tokens.weight", "lm_head.weight")
HUB_TOWER = "vision_tower.vision_model."
LLAVA_TYPES = ("llava", "llava_next")  # an --out holding one of these may be replaced


@dataclass(frozen=True)
class Recipe:
    """The resolved choices of one assembly."""

    projector: ProjectorKind
    vision_feature_layer: int
    select_strategy: SelectStrategy
    pad_to_square: bool
    dtype: DtypeName
    vocab_multiple: int
    seed: int
    max_shard_bytes: int
    progress: bool
    anyres_grids: tuple[str, ...] = ()  # LLaVA-NeXT when not empty
    chat_format: str = "llava_v1"


@dataclass
class StoredWeights:
    """Where the vision tower's and the decoder's stored tensors are, and how their keys map into HF Llava."""

    vision: WeightSource
    vision_key: Callable[[str], str | None]  # stored key -> key inside model.vision_tower, None to leave out
    text: WeightSource
    text_key: Callable[[str], str | None]  # stored key -> runtime key (model.language_model.* / lm_head.weight)


@dataclass(frozen=True)
class AssemblyReport:
    out: Path
    bytes_written: int
    dtype: str
    vision_type: str
    text_type: str
    projector: str
    vocab_rows: tuple[int, int]
    image_token_id: int
    pad_token_id: int
    image_seq_length: int
    pad_to_square: bool
    notes: tuple[str, ...] = ()
    anyres_grids: tuple[str, ...] = ()  # what was changed on the way to make the inputs fit, one line each

    def summary(self) -> str:
        return "\n".join([*(f"note: {note}" for note in self.notes),
            f"llava-hf checkpoint written to {self.out} ({self.bytes_written / 2**30:.2f} GiB of {self.dtype} weights)",
            f"  vision {self.vision_type}, language model {self.text_type}, projector {self.projector}",
            (f"  vocabulary rows {self.vocab_rows[0]} -> {self.vocab_rows[1]}; <image> id {self.image_token_id}, "
             f"pad id {self.pad_token_id}"),
            (f"  LLaVA-NeXT: AnyRes grids {', '.join(self.anyres_grids)}; {self.image_seq_length} base tokens per "
             "image, then the tiles' unpadded rows, each with an image_newline" if self.anyres_grids else
             f"  {self.image_seq_length} tokens per image; pad to square: {'yes' if self.pad_to_square else 'no'}"),
        ])


def resolve_dtype(name: DtypeName, text_config) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    stored = getattr(text_config, "dtype", None) or getattr(text_config, "torch_dtype", None)
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    return stored if isinstance(stored, torch.dtype) and stored.is_floating_point else torch.float32


def check_destination(out: Path, sources: list[Path]) -> None:
    """Refuse an --out that holds something other than a llava checkpoint, that is one of the inputs, or that
    cannot be written; first move back a checkpoint an interrupted run set aside."""
    resolved = out.resolve()
    for source in sources:
        if resolved == source.resolve() or resolved in source.resolve().parents:
            raise AssemblyError(f"--out {out}: is (or contains) the input {source}; choose a new directory")
    recover(out)
    if out.exists() and not out.is_dir():
        raise AssemblyError(f"--out {out}: is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()):
        try:
            is_llava = json.loads((out / "config.json").read_text()).get("model_type") in LLAVA_TYPES
        except (OSError, ValueError, AttributeError):
            is_llava = False
        if not is_llava:
            raise AssemblyError(f"--out {out}: exists and is not a llava checkpoint; choose a new or empty directory "
                                "(an earlier llava checkpoint there would be replaced)")
    staging_dir(out).rmdir()  # can we write beside it? (before reading gigabytes of weights, not after)


def _llava_config(vision: VisionPart, text: TextPart, recipe: Recipe, image_seq_length: int, dtype: torch.dtype):
    from transformers import LlavaConfig

    choices = dict(image_token_index=text.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                   projector_hidden_act=ACTIVATIONS[recipe.projector], vision_feature_layer=recipe.vision_feature_layer,
                   vision_feature_select_strategy=recipe.select_strategy, image_seq_length=image_seq_length,
                   pad_token_id=text.tokenizer.pad_token_id, tie_word_embeddings=text.tied)
    if recipe.anyres_grids:
        config = next_config(vision.config, text.config, recipe.anyres_grids, **choices)
    else:
        config = LlavaConfig(vision_config=vision.config, text_config=text.config, **choices)
        config.architectures = ["LlavaForConditionalGeneration"]  # loaders that dispatch on it (vLLM) pick the class
    for part in (config, config.vision_config, config.text_config):
        part.dtype = dtype
    return config


def _processor(vision: VisionPart, text: TextPart, recipe: Recipe):
    from transformers import LlavaProcessor

    template = chat_template(recipe.chat_format)
    if recipe.anyres_grids:
        image_processor = next_image_processor(vision.image_processor, vision.config.image_size, recipe.anyres_grids)
        return next_processor(image_processor, text.tokenizer, vision.config.patch_size, recipe.select_strategy,
                              vision.cls_tokens, template)
    return LlavaProcessor(image_processor=vision.image_processor, tokenizer=text.tokenizer,
                          patch_size=vision.config.patch_size, vision_feature_select_strategy=recipe.select_strategy,
                          num_additional_image_tokens=vision.cls_tokens, chat_template=template)


def expected_tensors(config) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Runtime key -> shape of every tensor the checkpoint holds, and runtime key -> saved key."""
    from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration
    from transformers.core_model_loading import revert_weight_conversion

    with torch.device("meta"):
        model = (LlavaNextForConditionalGeneration if config.model_type == "llava_next"
                 else LlavaForConditionalGeneration)(config)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied to the embeddings; save_pretrained leaves it out
    saved = {key: hub_name(next(iter(revert_weight_conversion(model, {key: tensor})))) for key, tensor in state.items()}
    return {key: tuple(tensor.shape) for key, tensor in state.items()}, saved


def hub_name(saved: str) -> str:
    """transformers 5 saves the tower without its `vision_model.` level; llava-hf on the hub (and 4.x) has it."""
    if saved.startswith("vision_tower.") and not saved.startswith(HUB_TOWER):
        return HUB_TOWER + saved.removeprefix("vision_tower.")
    return saved


def _listed(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return [f"{title}: {', '.join(items[:MAX_LISTED])}{more}"]


def _match(source: WeightSource, to_runtime: Callable[[str], str | None], expected: dict[str, tuple[int, ...]],
           stored_rows: int | None = None) -> tuple[dict[str, str], list[str]]:
    """Map `source`'s keys to runtime keys in `expected`; report unexpected keys and shape mismatches."""
    matched: dict[str, str] = {}
    unexpected, mismatched = [], []
    for stored in source:
        runtime = to_runtime(stored)
        if runtime is None:
            continue
        if runtime not in expected:
            unexpected.append(stored)
            continue
        shape, want = source.ref(stored).shape, expected[runtime]
        if runtime in VOCAB_KEYS and stored_rows is not None:
            want = (stored_rows,) + want[1:]  # rows grow on the way out
        if shape != want:
            mismatched.append(f"{stored} {list(shape)} (llava needs {list(want)})")
            continue
        matched[runtime] = stored
    problems = _listed(f"{source.origin}: tensors HF Llava has no place for", unexpected)
    problems += _listed(f"{source.origin}: tensors whose shape does not fit", mismatched)
    return matched, problems


def _plan_source(source: WeightSource, matched: dict[str, str], saved: dict[str, str], dtype: torch.dtype,
                 expected: dict[str, tuple[int, ...]], seed: int) -> list[PlannedTensor]:
    """Tensors of one source in stored order (each .bin file is read once); the last one lets the file go."""
    order = {stored: index for index, stored in enumerate(source)}
    runtimes = sorted(matched, key=lambda runtime: order[matched[runtime]])
    planned = []
    for index, runtime in enumerate(runtimes):
        stored, last = matched[runtime], index == len(runtimes) - 1
        rows = expected[runtime][0] if runtime in VOCAB_KEYS else None
        salt = VOCAB_KEYS.index(runtime) if runtime in VOCAB_KEYS else 0  # embeddings and head draw apart

        def make(stored=stored, last=last, rows=rows, salt=salt):
            value = source.read(stored)
            if last:
                source.release()
            if rows is not None:
                value = grow_rows(value, rows, seed + salt)
            return value.to(dtype)

        planned.append(PlannedTensor(saved[runtime], dtype, expected[runtime], make))
    return planned


def save_configs(staging: Path, config, generation_config, processor) -> None:
    """config.json, generation_config.json and the processor files; a refusal names the file it was writing."""
    for name, thing in (("config.json", config), ("generation_config.json", generation_config),
                        ("the processor and tokenizer files", processor)):
        try:
            thing.save_pretrained(staging)
        except (ValueError, TypeError, AttributeError) as error:
            raise AssemblyError(f"transformers refused to write {name} ({error}); the inputs' config or tokenizer "
                                "files hold a value it cannot save: fix or remove it and run again") from error
    _portable_tokenizer_config(staging / "tokenizer_config.json")
    if config.model_type == "llava_next":
        split_processor_files(staging)


def _portable_tokenizer_config(file: Path) -> None:
    """tokenizer_config.json as 4.x reads it too. transformers 5 lists BOS/EOS again under `extra_special_tokens` for
    a converted LLaMA tokenizer; 4.x wants a mapping there and fails on the list. Tokens already named (bos, eos,
    unk, pad) lose nothing by leaving it."""
    if not file.is_file():
        return
    settings = json.loads(file.read_text())
    extras = settings.get("extra_special_tokens")
    named = {settings.get(name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    changed = False
    if isinstance(extras, list) and all(token in named for token in extras):
        del settings["extra_special_tokens"]
        changed = True
    # transformers 5 names a plain tokenizer.json tokenizer (Llama-3's) TokenizersBackend, a class 4.x lacks; both
    # read the 4.x name PreTrainedTokenizerFast as that same class.
    if settings.get("tokenizer_class") == "TokenizersBackend":
        settings["tokenizer_class"] = "PreTrainedTokenizerFast"
        changed = True
    if changed:
        file.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n")


def write_checkpoint(out: Path, planned: list[PlannedTensor], configs: tuple, max_shard_bytes: int, progress: bool,
                     sources: list[WeightSource]) -> int:
    """Write the weights and (config, generation config, processor) into a staging folder, then publish it at
    `out`; return the bytes of weights written."""
    from tqdm.auto import tqdm

    staging = staging_dir(out)
    try:
        total_bytes = sum(tensor.nbytes for tensor in planned)
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="writing llava-hf weights",
                  disable=not progress) as bar:
            written = write_safetensors(staging, planned, max_shard_bytes, bar)
        save_configs(staging, *configs)
        publish(staging, out)
    finally:
        for source in sources:
            source.release()
        if staging.exists():
            shutil.rmtree(staging)
    return written


def build_checkpoint(vision: VisionPart, text: TextPart, projector: ProjectorWeights, stored: StoredWeights,
                     recipe: Recipe, out: Path) -> AssemblyReport:
    """Check everything, then write the checkpoint to `out` (atomically); raise AssemblyError listing all problems."""
    dtype = resolve_dtype(recipe.dtype, text.config)
    processor = _processor(vision, text, recipe)
    patches = (vision.config.image_size // vision.config.patch_size) ** 2
    fallback = patches + vision.cls_tokens - (vision.cls_tokens if recipe.select_strategy == "default" else 0)
    image_seq_length = image_seqlen_from_config(processor) or fallback
    config = _llava_config(vision, text, recipe, image_seq_length, dtype)
    expected, saved = expected_tensors(config)

    problems = check_choices(vision, recipe.vision_feature_layer, recipe.select_strategy)
    if recipe.anyres_grids:
        problems += check_next_choices(recipe.anyres_grids, recipe.select_strategy, vision.cls_tokens,
                                       recipe.pad_to_square)
    problems += check_shapes(projector, vision.config.hidden_size, text.config.hidden_size,
                             stored.vision.origin, stored.text.origin)
    tower = {key.removeprefix("model.vision_tower."): shape for key, shape in expected.items()
             if key.startswith("model.vision_tower.")}
    vision_matched, vision_problems = _match(stored.vision, stored.vision_key, tower)
    vision_matched = {"model.vision_tower." + key: value for key, value in vision_matched.items()}

    def text_key(key: str) -> str | None:
        runtime = stored.text_key(key)
        return None if text.tied and runtime == "lm_head.weight" else runtime  # a tied head is not stored

    text_expected = {key: shape for key, shape in expected.items()  # an original NeXT stores image_newline there
                     if key.startswith("model.language_model.") or key in ("lm_head.weight", NEWLINE_KEY)}
    text_matched, text_problems = _match(stored.text, text_key, text_expected, text.stored_rows)
    problems += vision_problems + text_problems
    missing = [key for key in expected if key not in vision_matched and key not in text_matched
               and not key.startswith("model.multi_modal_projector.") and key != NEWLINE_KEY]
    problems += _listed("tensors missing from the inputs (wrong or incomplete checkpoint?)", missing)
    if problems:
        raise AssemblyError("cannot assemble:\n  " + "\n  ".join(problems))

    planned = _plan_source(stored.vision, vision_matched, saved, dtype, expected, recipe.seed)
    for name, tensor in projector.tensors.items():
        runtime = "model.multi_modal_projector." + name
        planned.append(PlannedTensor(saved[runtime], dtype, expected[runtime], lambda t=tensor: t.to(dtype)))
    if NEWLINE_KEY in expected and NEWLINE_KEY not in text_matched:
        newline = fresh_newline(expected[NEWLINE_KEY][0], recipe.seed, dtype)
        planned.append(PlannedTensor(saved[NEWLINE_KEY], dtype, expected[NEWLINE_KEY], lambda: newline))
    planned += _plan_source(stored.text, text_matched, saved, dtype, expected, recipe.seed)

    written = write_checkpoint(out, planned, (config, text.generation_config, processor), recipe.max_shard_bytes,
                               recipe.progress, [stored.vision, stored.text])
    return AssemblyReport(
        out=out, bytes_written=written, dtype=str(dtype).removeprefix("torch."),
        vision_type=vision.config.model_type, text_type=text.config.model_type,
        projector=f"{projector.kind} from {projector.origin}", vocab_rows=(text.stored_rows, text.config.vocab_size),
        image_token_id=config.image_token_index, pad_token_id=text.tokenizer.pad_token_id,
        image_seq_length=image_seq_length, pad_to_square=recipe.pad_to_square, notes=tuple(text.notes),
        anyres_grids=recipe.anyres_grids,
    )
