"""`llava-lf assemble --preset llava1_6_* --llava S1`: a LLaVA-1.5-layout llava-hf checkpoint (LLaVA-NeXT's stage 1
is LLaVA-1.5's; the NeXT release reuses its connector) made a LlavaNext checkpoint for stage 2.

Every stored tensor is carried byte for byte (its own dtype, under the hub's name); `image_newline` is the one new
tensor. The tokenizer is kept (its `<image>` and pad), the image processor becomes LlavaNext's with the tower's
settings and the preset's grids, and the processor gets the preset's chat template.
"""

from __future__ import annotations

import torch

from llava_lf.common.image_tokens import image_seqlen_from_config

from .build import AssemblyReport, check_destination, expected_tensors, write_checkpoint
from .chat_templates import FORMAT_TOKENS, chat_template
from .generation import load_generation_config, make_savable
from .next import NEWLINE_KEY, check_next_choices, fresh_newline, next_config, next_image_processor, next_processor
from .spec import CHAT_FORMATS, AssemblyError, UpgradeSpec
from .tensor_files import PlannedTensor, weight_source
from .vision import CLS_TOKENS, read_config

LEFT_OUT = ("position_ids", "rotary_emb.inv_freq")  # buffers older checkpoints saved; models rebuild them
# Stored-name prefixes of every llava-hf layout (hub/4.x legacy, 4.52+ and 5.x runtime) -> transformers 5's runtime.
RENAMES = (
    ("model.vision_tower.vision_model.", "model.vision_tower."),
    ("vision_tower.vision_model.", "model.vision_tower."),
    ("vision_tower.", "model.vision_tower."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
    ("model.", "model."),
    ("lm_head.", "lm_head."),
)
EMBEDDINGS = "model.language_model.embed_tokens.weight"


def runtime_key(stored: str) -> str | None:
    """The transformers 5 name of a tensor stored in a llava-hf checkpoint; None for rebuilt buffers."""
    if stored.endswith(LEFT_OUT):
        return None
    for prefix, runtime in RENAMES:
        if stored.startswith(prefix):
            return runtime + stored.removeprefix(prefix)
    return stored


def _read_stage1(spec: UpgradeSpec):
    """The stage-1 checkpoint's config and processor, refusing what is not one."""
    from transformers import AutoProcessor, LlavaConfig

    raw = read_config(spec.llava, "--llava")
    where = spec.llava / "config.json"
    if raw.get("model_type") == "llava_next":
        raise AssemblyError(f"--llava {where}: is already LLaVA-NeXT (model_type llava_next); train it as it is")
    if raw.get("model_type") != "llava":
        raise AssemblyError(f"--llava {where}: model_type {raw.get('model_type')!r} is not a llava-hf LLaVA checkpoint; "
                            "give stage 1's output (an original LLaVA checkpoint: `llava-lf import-llava` it first)")
    try:
        processor = AutoProcessor.from_pretrained(spec.llava)
    except (OSError, ValueError, TypeError) as error:
        raise AssemblyError(f"--llava {spec.llava}: no usable processor and tokenizer files ({error}); copy them "
                            "from the checkpoint stage 1 started from") from error
    return LlavaConfig.from_pretrained(spec.llava), processor


def upgrade_stage1(spec: UpgradeSpec) -> AssemblyReport:
    old, processor = _read_stage1(spec)
    problems = [] if spec.anyres_grids else ["--llava makes a LLaVA-NeXT checkpoint: give a NeXT preset (one with "
                                             "anyres_grids, e.g. llava1_6_vicuna_7b) or --anyres-grids"]
    if spec.chat_format not in CHAT_FORMATS:
        problems.append(f"chat_format {spec.chat_format!r}: choose one of {', '.join(CHAT_FORMATS)}")
    tokenizer, vision = processor.tokenizer, old.vision_config
    cls_tokens = CLS_TOKENS.get(vision.model_type, 0)
    problems += check_next_choices(spec.anyres_grids, old.vision_feature_select_strategy, cls_tokens, False)
    missing = [token for token in FORMAT_TOKENS.get(spec.chat_format, ()) if token not in tokenizer.get_vocab()]
    if missing:
        problems.append(f"the tokenizer of --llava {spec.llava} lacks {', '.join(missing)}, which {spec.chat_format} "
                        "writes; new tokens need new rows, so assemble from parts with this preset instead")
    if problems:
        raise AssemblyError("cannot upgrade:\n  " + "\n  ".join(problems))
    check_destination(spec.out, [spec.llava])

    source = weight_source(spec.llava, f"--llava {spec.llava}")
    stored_by_runtime = {runtime_key(key): key for key in source if runtime_key(key) is not None}
    dtype = source.ref(stored_by_runtime[EMBEDDINGS]).dtype if EMBEDDINGS in stored_by_runtime else torch.float32
    tokenizer.chat_template = chat_template(spec.chat_format)
    image_processor = next_image_processor(processor.image_processor, vision.image_size, spec.anyres_grids)
    new_processor = next_processor(image_processor, tokenizer, vision.patch_size, old.vision_feature_select_strategy,
                                   cls_tokens, tokenizer.chat_template)
    seqlen = image_seqlen_from_config(new_processor) or (vision.image_size // vision.patch_size) ** 2
    config = next_config(vision, old.text_config, spec.anyres_grids, image_token_index=old.image_token_index,
                         projector_hidden_act=old.projector_hidden_act, vision_feature_layer=old.vision_feature_layer,
                         vision_feature_select_strategy=old.vision_feature_select_strategy, image_seq_length=seqlen,
                         multimodal_projector_bias=getattr(old, "multimodal_projector_bias", True),
                         pad_token_id=getattr(old, "pad_token_id", None) or tokenizer.pad_token_id,
                         tie_word_embeddings=old.tie_word_embeddings)
    for part in (config, config.vision_config, config.text_config):
        part.dtype = dtype
    expected, saved = expected_tensors(config)

    unexpected = [stored for runtime, stored in stored_by_runtime.items() if runtime not in expected]
    mismatched = [f"{stored} {list(source.ref(stored).shape)} (LlavaNext needs {list(expected[runtime])})"
                  for runtime, stored in stored_by_runtime.items()
                  if runtime in expected and tuple(source.ref(stored).shape) != expected[runtime]]
    absent = [key for key in expected if key not in stored_by_runtime and key != NEWLINE_KEY]
    problems = [f"{title}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}" for title, items in (
        ("tensors LlavaNext has no place for", unexpected), ("tensors whose shape does not fit", mismatched),
        ("tensors missing from the checkpoint", absent)) if items]
    if problems:
        raise AssemblyError(f"--llava {spec.llava}: cannot upgrade:\n  " + "\n  ".join(problems))

    order = {stored: index for index, stored in enumerate(source)}
    planned = []
    for runtime in sorted((key for key in expected if key in stored_by_runtime), key=lambda k: order[stored_by_runtime[k]]):
        ref = source.ref(stored_by_runtime[runtime])
        planned.append(PlannedTensor(saved[runtime], ref.dtype, ref.shape,
                                     lambda key=ref.key: source.read(key)))  # as stored: no cast
    if NEWLINE_KEY in expected:
        newline = fresh_newline(expected[NEWLINE_KEY][0], spec.seed, dtype)
        planned.append(PlannedTensor(saved[NEWLINE_KEY], dtype, expected[NEWLINE_KEY], lambda: newline))
    generation_config = load_generation_config(spec.llava, old.text_config, "--llava")
    notes = make_savable(generation_config, f"--llava {spec.llava}/generation_config.json")
    written = write_checkpoint(spec.out, planned, (config, generation_config, new_processor), spec.max_shard_bytes,
                               spec.progress, [source])
    rows = expected[EMBEDDINGS][0] if EMBEDDINGS in expected else 0
    return AssemblyReport(
        out=spec.out, bytes_written=written, dtype=str(dtype).removeprefix("torch."), vision_type=vision.model_type,
        text_type=old.text_config.model_type, projector=f"{old.projector_hidden_act} projector carried from --llava",
        vocab_rows=(rows, rows), image_token_id=old.image_token_index, pad_token_id=tokenizer.pad_token_id,
        image_seq_length=seqlen, pad_to_square=False, notes=tuple(notes), anyres_grids=spec.anyres_grids)
