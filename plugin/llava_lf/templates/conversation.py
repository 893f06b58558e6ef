"""The LLaVA conversation formats as LLaMA-Factory templates, which fit each sample into cutoff_len at turn
boundaries and report what they trim (docs/templates.md):

`llava_v1`: <s>{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>
`llava_plain` (stage 1): <s><image>{caption}\\n
and LLaVA-NeXT's (`llava/conversation.py`), for its Mistral, Yi-34B and Llama-3 backbones (templates/next_formats.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from llamafactory.data.data_utils import Role
from llamafactory.data.formatter import EmptyFormatter, StringFormatter
from llamafactory.data.mm_plugin import get_mm_plugin
from llamafactory.data.template import TEMPLATES as HOST_TEMPLATES
from llamafactory.data.template import Template, register_template

from llava_lf.common.fit_report import (
    PreprocessRun,
    SampleRecord,
    image_names,
    note_tokenising,
    record_sample,
    sample_fingerprint,
)
from llava_lf.common.turn_fit import TurnFit, dropped_placeholder, fit_turns, image_tokens_in
from llava_lf.errors import LlavaLfError
from llava_lf.formats import IMAGE_TOKEN, LLAVA_PLAIN_CHAT_TEMPLATE, VICUNA_V1_SYSTEM, llava_v1_chat_template
from llava_lf.seams import registry
from llava_lf.seams import templates as seam_templates

from .fast_encode import (
    Encode,
    collapse_runs,
    encode_text,
    encode_with_image_runs,
    fast_encoder,
    run_ids,
    run_text,
    widen_into,
)
from .mm_plugin import PLUGIN_NAME, GivenSample, given_sample
from .slot_layout import LAYOUT_KEY, TurnSlots, slot_layout

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

    from llava_lf.common.turn_fit import Pairs

RUN_ATTR = "_preprocess_run"  # bound by the dataset seam on the copy the host tokenises with; pickled with it
MEMO, MEMO_MAX_CHARS, MEMO_MAX_ENTRIES = "_encoded_texts", 400, 512  # never pickled
MEMO_MAX_CONTENT_CHARS = 64  # a turn's text is remembered up to this length (slot texts up to MEMO_MAX_CHARS)
RUN_KEY = ("image run",)  # its key in the memo: the last image run's length, tried first on the next sample
QUESTION_CHARS = 80
UNBOUND = ("{name}.encode_multiturn was called outside the host's dataset preprocessing "
           "(llamafactory.data.loader._get_preprocessed_dataset, where llava_lf binds cutoff_len), so it cannot fit "
           "the sample into cutoff_len and the host would cut it inside an image. Tokenise through the host's loader "
           "(llamafactory-cli train), or call encode_pairs() for unfitted pairs")


@dataclass
class LlavaTemplate(Template):
    """Vicuna v1 slots from the host, plus turn-boundary fitting, fast image runs and an exact Jinja form."""

    def encode_multiturn(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None = None,
        tools: str | None = None,
        discarding_history_cot: bool = False,
    ) -> Pairs:
        """The host's pairs fitted into the bound run's cutoff_len at turn boundaries (what its processor calls)."""
        run: PreprocessRun | None = self.__dict__.get(RUN_ATTR)
        if run is None:
            raise LlavaLfError(UNBOUND.format(name=type(self).__name__))
        pairs = super().encode_multiturn(tokenizer, messages, system, tools, discarding_history_cot)
        note_tokenising(run)
        budget = run.cutoff_len - (1 if self.efficient_eos else 0)
        lengths = [len(source) + len(target) for source, target in pairs]
        if sum(lengths) <= budget:  # what fit_turns keeps whole, without building its record for every sample
            return pairs
        fit = fit_turns(lengths, budget)
        kept = pairs[: fit.kept_pairs] or dropped_placeholder(tokenizer.bos_token_id, tokenizer.eos_token_id)
        image_id = tokenizer.convert_tokens_to_ids(self.mm_plugin.image_token)
        record_sample(run, _record(run, fit, image_tokens_in(pairs, image_id),
                                   image_tokens_in(pairs[: fit.kept_pairs], image_id),
                                   given_sample(self.mm_plugin, messages)))
        return kept

    def encode_pairs(self, tokenizer: PreTrainedTokenizer, messages: list[dict[str, str]],
                     system: str | None = None, tools: str | None = None) -> Pairs:
        """Every (prompt, answer) pair whole, as the host's template gives them: for counting tokens."""
        return super().encode_multiturn(tokenizer, messages, system, tools)

    def for_preprocessing(self, run: PreprocessRun) -> LlavaTemplate:
        """A copy of this template that fits samples into `run.cutoff_len` and reports to its output folder."""
        bound = copy.copy(self)
        bound.__dict__[RUN_ATTR] = run
        return bound

    def registered_name(self) -> str:
        return next((name for name, template in HOST_TEMPLATES.items() if template is self), type(self).__name__)

    def _encode(self, tokenizer: PreTrainedTokenizer, messages: list[dict[str, str]], system: str | None,
                tools: str | None) -> list[list[int]]:
        """The host's `_encode` for user/assistant turns, with the slots laid out once instead of per message."""
        memo = self._memo(tokenizer)
        layout = memo[LAYOUT_KEY] if LAYOUT_KEY in memo else memo.setdefault(LAYOUT_KEY, slot_layout(self, tokenizer))
        if layout is None or tools:
            return super()._encode(tokenizer, messages, system, tools)
        encode, default_system = fast_encoder(tokenizer), system or self.default_system
        encoded = []
        for index, message in enumerate(messages):
            turn = layout.turns.get(message["role"])
            if turn is None:  # another role: the host's slot-by-slot path
                return super()._encode(tokenizer, messages, system, tools)
            before, prefix = turn.before, ()
            if index == 0:
                prefix = layout.prefix
                if default_system:
                    before = layout.system.before + default_system + layout.system.after + before
            ids = self._turn_ids(memo, encode, tokenizer, before, message["content"], turn, prefix, layout.image_id)
            if ids is None:  # `{{` in the text: the host's path too
                return super()._encode(tokenizer, messages, system, tools)
            encoded.append(ids)
        return encoded

    def _turn_ids(self, memo: dict, encode: Encode, tokenizer: PreTrainedTokenizer, before: str, content: str,
                  turn: TurnSlots, prefix: tuple[int, ...], image_id: int | None) -> list[int] | None:
        """`prefix`, the ids of `before + content + turn.after` and the turn's BOS/EOS, in one list; None when the
        content holds `{{` (the host's formatter would read it as a placeholder).

        An image run is collapsed in the content alone (before it is joined to the slot text), so the 4 KB run is
        compared once instead of scanned, copied and searched for `{{` several times a sample."""
        image_token = self.mm_plugin.image_token
        has_image = bool(image_token) and image_token in content
        if has_image and image_id is not None and "{" not in image_token:
            ids = self._leading_run_ids(memo, encode, before, content, turn, prefix, image_token, image_id)
            if ids is not None:
                return ids
            collapsed, runs = collapse_runs(content, image_token, memo.get(RUN_KEY, 0))
            if "{{" in collapsed:
                return None
            if max(runs) > 1 and image_token not in before and image_token not in turn.after:
                memo[RUN_KEY] = runs[-1]
                ids = list(prefix)
                if widen_into(ids, encode, before + collapsed + turn.after, runs, image_token, image_id,
                              partial(self._remembered_with, memo, encode)):
                    ids += turn.trailing
                    return ids
        elif "{{" in content:
            return None
        text = before + content + turn.after
        if has_image or (image_token and (image_token in before or image_token in turn.after)):
            return [*prefix, *self._encode_string(tokenizer, text, image_id), *turn.trailing]
        if len(text) <= MEMO_MAX_CONTENT_CHARS:  # a short text may recur (`Yes`, `No`); a long one rarely does
            return [*prefix, *self._remembered_with(memo, encode, text), *turn.trailing]
        ids = encode(text)  # a list of our own: the slots' ids go in place
        if prefix:
            ids[:0] = prefix
        ids += turn.trailing
        return ids

    def _leading_run_ids(self, memo: dict, encode: Encode, before: str, content: str, turn: TurnSlots,
                         prefix: tuple[int, ...], image_token: str, image_id: int) -> list[int] | None:
        """`_turn_ids` for LLaVA's image-first turn whose run has the last sample's length, its usual case: the same
        ids as collapsing and widening (`fast_encode`), without their general steps; None for any other turn."""
        count = memo.get(RUN_KEY, 0)
        run = run_text(image_token, count) if count > 1 else ""
        if not run or not content.startswith(run) or content.find(image_token, len(run)) >= 0:
            return None
        after_run = content[len(run):]
        if "{{" in after_run or image_token in before or image_token in turn.after:
            return None
        rest = encode(image_token + after_run + turn.after)  # a piece after an added token, as in the whole text
        if rest.count(image_id) != 1:
            return None
        position = rest.index(image_id)
        ids = [*prefix, *self._remembered_with(memo, encode, before), *rest[:position]]
        ids += run_ids(image_id, count)
        ids += rest[position + 1 :]
        ids += turn.trailing
        return ids

    def _encode_string(self, tokenizer: PreTrainedTokenizer, text: str, image_id: int | None = None) -> list[int]:
        image_token = self.mm_plugin.image_token
        if image_token and image_token in text:
            return encode_with_image_runs(tokenizer, text, image_token, image_id=image_id,
                                          encode_head=partial(self._remembered, tokenizer))
        return self._remembered(tokenizer, text) if text else []

    def _convert_elements_to_ids(self, tokenizer: PreTrainedTokenizer, elements: list[Any]) -> list[int]:
        image_token = self.mm_plugin.image_token
        token_ids: list[int] = []
        for element in _join_adjacent_text(elements):
            if isinstance(element, str) and image_token and image_token in element:
                token_ids += self._encode_string(tokenizer, element)
            elif isinstance(element, (str, set)):  # `{"bos_token"}` / `{"eos_token"}` cost a property lookup each
                token_ids += self._remembered(tokenizer, element)
            else:
                token_ids += super()._convert_elements_to_ids(tokenizer, [element])
        return token_ids

    def _remembered(self, tokenizer: PreTrainedTokenizer, element: str | set[str]) -> list[int]:
        """Ids of a short text or a special-token slot, remembered: the system text recurs in every sample."""
        if isinstance(element, str):
            return self._remembered_with(self._memo(tokenizer), partial(encode_text, tokenizer), element)
        memo, key = self._memo(tokenizer), frozenset(element)
        if key not in memo:
            memo[key] = super()._convert_elements_to_ids(tokenizer, [element])
        return memo[key]

    @staticmethod
    def _remembered_with(memo: dict, encode: Encode, text: str) -> list[int]:
        """The ids of `text` from the memo (shared: read them, do not change them), tokenised and kept if new."""
        ids = memo.get(text)
        if ids is None:
            ids = encode(text) if text else []
            if len(text) <= MEMO_MAX_CHARS:
                if len(memo) >= MEMO_MAX_ENTRIES:  # started afresh (in place: a caller may hold it), so new texts get in
                    memo.clear()
                memo[text] = ids
        return ids

    def _memo(self, tokenizer: PreTrainedTokenizer) -> dict:
        """This template's memo for `tokenizer` (texts' ids, the slot layout), started afresh for another tokenizer."""
        owner, memo = self.__dict__.get(MEMO) or (None, None)
        if owner is not tokenizer:
            memo = {}
            self.__dict__[MEMO] = (tokenizer, memo)
        return memo

    def _get_jinja_template(self, tokenizer: PreTrainedTokenizer) -> str:
        return llava_v1_chat_template(self.default_system)

    def fix_special_tokens(self, tokenizer: PreTrainedTokenizer) -> None:
        registry.require(seam_templates.FEATURE)  # the host loads every template through here: stop on a misfit
        super().fix_special_tokens(tokenizer)
        self.__dict__.pop(MEMO, None)  # the tokenizer may have gained tokens

    def __getstate__(self) -> dict[str, Any]:
        # The memo is rebuilt per process; leaving it out keeps the datasets fingerprint the same from run to run.
        state = dict(self.__dict__)
        state.pop(MEMO, None)
        return state


def _join_adjacent_text(elements: list[Any]) -> list[Any]:
    """One string per run of text slots: `{system} ` and `USER: ...` are tokenised together, as in the rendered
    prompt a processor's chat template gives (a tokenizer may merge across that boundary)."""
    joined: list[Any] = []
    for element in elements:
        if isinstance(element, str) and joined and isinstance(joined[-1], str):
            joined[-1] += element
        else:
            joined.append(element)
    return joined


def _record(run: PreprocessRun, fit: TurnFit, image_tokens: int, kept_image_tokens: int,
            given: GivenSample | None) -> SampleRecord:
    reason = ("the first turn alone is longer than cutoff_len" if fit.action == "dropped"
              else "later turns pass cutoff_len")
    messages, images = (given.messages, given.images) if given is not None else ([], [])
    question = next((message["content"] for message in messages if message.get("role") == Role.USER.value), "")
    return SampleRecord(sample=sample_fingerprint(messages, images) if given is not None else "?",
                        action=fit.action, reason=reason, cutoff_len=run.cutoff_len,
                        tokens=fit.tokens, kept_tokens=fit.kept_tokens, first_turn_tokens=fit.pair_lengths[0],
                        turns=len(fit.pair_lengths), kept_turns=fit.kept_pairs, image_tokens=image_tokens,
                        kept_image_tokens=kept_image_tokens, images=image_names(images),
                        question=" ".join(question.replace("<image>", " ").split())[:QUESTION_CHARS])


@dataclass
class PlainTemplate(LlavaTemplate):
    """Stage-1 format: each human turn is reduced to its image tokens; answers end with a newline."""

    def _encode(
        self,
        tokenizer: PreTrainedTokenizer,
        messages: list[dict[str, str]],
        system: str | None,
        tools: str | None,
    ) -> list[list[int]]:
        image_token = self.mm_plugin.image_token
        encoded = []
        for index, message in enumerate(messages):
            elements = list(self.format_prefix.apply()) if index == 0 else []  # apply() returns the shared slots
            if message["role"] == Role.USER:
                # After the mm plugin ran, the content holds the expanded image tokens: keep only those.
                elements += [image_token * message["content"].count(image_token)]
            elif message["role"] == Role.ASSISTANT:
                elements += self.format_assistant.apply(content=message["content"])
            else:
                raise LlavaLfError(_plain_role_problem(index, message, given_sample(self.mm_plugin, messages)))
            encoded.append(self._convert_elements_to_ids(tokenizer, elements))
        return encoded

    def _get_jinja_template(self, tokenizer: PreTrainedTokenizer) -> str:
        return LLAVA_PLAIN_CHAT_TEMPLATE


def _plain_role_problem(index: int, message: dict[str, str], given: GivenSample | None) -> str:
    images = f" with images {image_names(given.images)}" if given is not None and given.images else ""
    text = " ".join(message["content"].split())[:QUESTION_CHARS]
    return (f"a training sample{images}: turn {index + 1} has role {message['role']!r} ({text!r}), and the "
            f"llava_plain template (stage 1) takes user and assistant turns only; convert the dataset with "
            f"`llava-lf convert --template llava_plain` (it rejects such records) or train with template: llava_v1")


def llava_lf_plugin():
    """The mm plugin every llava_lf template takes: ours, with LLaVA's `<image>` placeholder."""
    return get_mm_plugin(name=PLUGIN_NAME, image_token=IMAGE_TOKEN)


def register_llava_v1() -> None:
    register_template(
        name="llava_v1",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_system=StringFormatter(slots=["{{content}} "]),
        format_user=StringFormatter(slots=["USER: {{content}} ASSISTANT:"]),
        format_assistant=StringFormatter(slots=[" {{content}}", {"eos_token"}]),
        default_system=VICUNA_V1_SYSTEM,
        mm_plugin=llava_lf_plugin(),
        template_class=LlavaTemplate,
    )


def register_llava_plain() -> None:
    register_template(
        name="llava_plain",
        format_prefix=EmptyFormatter(slots=[{"bos_token"}]),
        format_assistant=StringFormatter(slots=["{{content}}\n"]),
        mm_plugin=llava_lf_plugin(),
        template_class=PlainTemplate,
    )


# LLaVA-NeXT's other formats subclass LlavaTemplate and live in next_formats.py; registration takes both tables.
TEMPLATES = {"llava_v1": register_llava_v1, "llava_plain": register_llava_plain}

