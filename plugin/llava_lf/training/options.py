"""The plugin's training options, carried in the host's `optim_args` string and parsed strictly.

LLaMA-Factory rejects YAML keys it does not know, so our options travel in a field both the host and
transformers already accept: `optim_args: mm_projector_lr=2.0e-5,group_by_modality=true`. transformers'
default optimizers ignore that string; our training callback (`report_to: [llava_lf]`) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_lf.errors import LlavaLfError

# Optimizers whose transformers handler reads only named keys of `optim_args` (or none): our keys pass
# through them unused. Others (bitsandbytes RMSprop, GaLore, APOLLO, LOMO, torchao, schedule-free) forward
# the whole string as keyword arguments or give it their own meaning.
OPTIMIZERS_IGNORING_OTHER_KEYS = frozenset({
    "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_apex_fused",
})
# Of those, the ones that read no key at all: any key that is not ours is a typo there.
OPTIMIZERS_READING_NO_KEYS = frozenset({
    "adamw_torch", "adamw_torch_fused", "adafactor",
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_apex_fused",
})

OPTION_HELP = {
    "mm_projector_lr": "learning rate of the multimodal projector, a positive number (LLaVA-1.5 LoRA: 2.0e-5)",
    "mm_vision_tower_lr": "learning rate of the vision tower, a positive number (LLaVA-NeXT: 2.0e-6); needs "
                          "`freeze_vision_tower: false`",
    "group_by_modality": "true/false: require micro-batches that are all-image or all-text "
                         "(data from `llava-lf group-modality`, with `disable_shuffling: true`)",
    "recompute_layers": "with gradient checkpointing on, recompute only the first N decoder layers "
                        "(a whole number; unset: all, the host's default)",
    "sdpa_backend": "flash, cudnn, efficient or math: the only PyTorch SDPA kernel attention may use "
                    "(with flash_attn: sdpa; unset: PyTorch chooses)",
    "compile_layers": "true/false: torch.compile each decoder layer of the language model (regional compile)",
}
# bitsandbytes' 8-bit optimizers: transformers' own `create_optimizer` keeps every nn.Embedding's optimizer state
# in 32 bits for them (a GlobalOptimManager override); the optimizer we build for mm_projector_lr does not.
EIGHT_BIT_OPTIMIZERS = frozenset({"adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit"})
SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class TrainingOptionsError(LlavaLfError):
    """One or more problems with the plugin's training options, each with its fix."""

    def __str__(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"llava_lf training options (optim_args / report_to) are invalid:\n{lines}"


@dataclass(frozen=True)
class TrainingOptions:
    mm_projector_lr: float | None = None
    mm_vision_tower_lr: float | None = None
    group_by_modality: bool = False
    recompute_layers: int | None = None  # speed options: all off by default (docs/performance.md)
    sdpa_backend: str | None = None
    compile_layers: bool = False

    @property
    def active(self) -> bool:
        return self != TrainingOptions()

    def as_dict(self) -> dict[str, object]:
        return {key: getattr(self, key) for key in OPTION_HELP}


def _split_pairs(text: str, problems: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"optim_args item {item!r} is not key=value; write e.g. "
                            f"optim_args: mm_projector_lr=2.0e-5,group_by_modality=true")
            continue
        pairs.append((key, value))
    return pairs


def _rate(key: str, value: str, problems: list[str]) -> float | None:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        problems.append(f"optim_args {key}={value!r} is not a positive number; write e.g. {key}=2.0e-5")
        return None
    return number


def _flag(key: str, value: str, problems: list[str]) -> bool:
    lowered = value.lower()
    if lowered not in _TRUE | _FALSE:
        problems.append(f"optim_args {key}={value!r} is not a boolean; write {key}=true or {key}=false")
        return False
    return lowered in _TRUE


def _whole_number(key: str, value: str, problems: list[str]) -> int | None:
    if not value.isdigit():
        problems.append(f"optim_args {key}={value!r} is not a whole number; write e.g. {key}=8")
        return None
    return int(value)


def _choice(key: str, value: str, choices: tuple[str, ...], problems: list[str]) -> str | None:
    if value.lower() not in choices:
        problems.append(f"optim_args {key}={value!r} is not one of {', '.join(choices)}")
        return None
    return value.lower()


def parse_training_options(optim_args: str | None, optim: str) -> TrainingOptions:
    """Read our options out of `optim_args`; raise `TrainingOptionsError` listing every problem at once.

    `optim` is the transformers optimizer name (`TrainingArguments.optim`): keys that are not ours must be
    ones that optimizer reads, or they would be ignored in silence.
    """
    problems: list[str] = []
    values: dict[str, object] = {}
    foreign: list[str] = []
    for key, value in _split_pairs(optim_args or "", problems):
        if key in values:
            problems.append(f"optim_args names {key} twice; keep one")
        elif key in ("mm_projector_lr", "mm_vision_tower_lr"):
            values[key] = _rate(key, value, problems)
        elif key in ("group_by_modality", "compile_layers"):
            values[key] = _flag(key, value, problems)
        elif key == "recompute_layers":
            values[key] = _whole_number(key, value, problems)
        elif key == "sdpa_backend":
            values[key] = _choice(key, value, SDPA_BACKENDS, problems)
        else:
            foreign.append(key)
    options = TrainingOptions(**{key: value for key, value in values.items() if value is not None})
    optim = str(getattr(optim, "value", optim))
    if foreign and optim in OPTIMIZERS_READING_NO_KEYS:
        valid = "; ".join(f"{name}: {text}" for name, text in OPTION_HELP.items())
        problems.append(f"optim_args key(s) {', '.join(foreign)} are not llava_lf options and optim={optim} reads "
                        f"none, so they would be ignored; valid llava_lf options are {valid}")
    if options.active and optim not in OPTIMIZERS_IGNORING_OTHER_KEYS:
        problems.append(f"optim={optim} passes optim_args on to the optimizer itself, which would reject our keys; "
                        f"use one of {', '.join(sorted(OPTIMIZERS_IGNORING_OTHER_KEYS))}")
    rated = [key for key in ("mm_projector_lr", "mm_vision_tower_lr") if getattr(options, key) is not None]
    if rated and optim in EIGHT_BIT_OPTIMIZERS:
        problems.append(f"{', '.join(rated)} cannot be used with optim={optim}: the projector's optimizer is built by "
                        f"llava_lf, which does not keep the embeddings' 8-bit optimizer state in 32 bits as "
                        f"transformers does; use optim: adamw_torch (LLaVA's own) or drop {', '.join(rated)}")
    if problems:
        raise TrainingOptionsError(problems)
    return options
