"""`--cutoff-len` for the converter: count each human/gpt pair with the host's template and tokenizer, image tokens
included, and keep the pairs that fit by the templates' own rule (`common.turn_fit`; docs/data.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_lf.common.turn_fit import fit_turns
from llava_lf.errors import LlavaLfError

from .records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN, ROLE_SYSTEM, LlavaTurn
from .report import Problem
from .validate import too_long_problem

LLAVA_15_IMAGE_TOKENS = 576  # CLIP ViT-L/14 at 336 px, CLS dropped


@dataclass(frozen=True)
class CutoffSpec:
    cutoff_len: int
    tokenizer: Path  # a tokenizer folder, or a model folder (its processor config then gives the image tokens)
    template: str = "llava_v1"
    image_tokens: int | None = None  # overrides what the processor config says


def _image_tokens(path: Path, override: int | None) -> tuple[int, str]:
    """Tokens per image, and a note on where the number came from."""
    if override is not None:
        return override, f"{override} tokens per image (--image-tokens)"
    if (path / "processor_config.json").is_file() or (path / "preprocessor_config.json").is_file():
        from transformers import AutoProcessor

        from llava_lf.common.image_tokens import image_seqlen_from_config

        seqlen = image_seqlen_from_config(AutoProcessor.from_pretrained(path))
        if seqlen is not None:
            return seqlen, f"{seqlen} tokens per image (from the processor config in {path})"
    return LLAVA_15_IMAGE_TOKENS, (f"{LLAVA_15_IMAGE_TOKENS} tokens per image (LLaVA-1.5's CLIP-L/14-336; {path} "
                                   "has no Llava processor config: pass the model folder or --image-tokens)")


class TurnBudget:
    """Counts a conversation's tokens per human/gpt pair as the host's template renders them."""

    def __init__(self, spec: CutoffSpec):
        from llamafactory.data.template import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
        from transformers import AutoTokenizer

        self._fit_turns = fit_turns  # a pure rule: importing it loads no host

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
        except (OSError, ValueError) as error:
            raise LlavaLfError(f"cannot load a tokenizer from {spec.tokenizer} ({error}); pass --tokenizer with the "
                              "language model's or the assembled Llava model's folder") from None
        self.cutoff_len = spec.cutoff_len
        self.image_tokens, note = _image_tokens(spec.tokenizer, spec.image_tokens)
        self.notes = [f"cutoff {spec.cutoff_len} tokens with template {spec.template}; {note}"]
        if len(self.tokenizer.encode(IMAGE_PLACEHOLDER, add_special_tokens=False)) != 1:
            # The assembler adds it the same way, so counts match the assembled model's tokenizer.
            self.tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER]})
            self.notes.append(f"the tokenizer lacks {IMAGE_PLACEHOLDER!r}; counted as if added (as assembling does)")
        self.template = get_template_and_fix_tokenizer(self.tokenizer, DataArguments(template=spec.template))

    def pair_lengths(self, turns: list[LlavaTurn]) -> list[int]:
        """Tokens of each human/gpt pair, the system text counted in the first, images fully expanded."""
        system = turns[0]["value"] if turns[0]["from"] == ROLE_SYSTEM else None
        roles = {ROLE_HUMAN: "user", ROLE_GPT: "assistant"}
        messages = [{"role": roles[turn["from"]], "content": turn["value"]} for turn in turns
                    if turn["from"] != ROLE_SYSTEM]
        pairs = self.template.encode_pairs(self.tokenizer, messages, system)
        extra = self.image_tokens - 1
        return [len(source) + len(target) + extra * messages[2 * index]["content"].count(IMAGE_PLACEHOLDER)
                for index, (source, target) in enumerate(pairs)]

    def fit(self, turns: list[LlavaTurn], problems: list[Problem]) -> list[LlavaTurn] | None:
        """The turns that fit (whole pairs only); None with a problem when even the first pair does not."""
        fit = self._fit_turns(self.pair_lengths(turns), self.cutoff_len)
        if fit.action == "dropped":
            problems.append(too_long_problem(fit.pair_lengths[0], self.cutoff_len))
            return None
        offset = 1 if turns[0]["from"] == ROLE_SYSTEM else 0
        return turns[: offset + 2 * fit.kept_pairs]
