"""A template's formatter slots laid out once per tokenizer (the text around each turn's content), so a turn is built
directly instead of slot by slot; anything but plain text around `{{content}}` gets None and the host's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamafactory.data.template import Template
    from transformers import PreTrainedTokenizer

CONTENT = "{{content}}"
LAYOUT_KEY = ("slot layout",)  # its key in the template's memo (text keys are strings)


@dataclass(frozen=True)
class TurnSlots:
    before: str
    after: str
    trailing: tuple[int, ...]  # BOS/EOS ids after the text


@dataclass(frozen=True)
class SlotLayout:
    prefix: tuple[int, ...]
    system: TurnSlots
    turns: dict[str, TurnSlots]  # by role: "user", "assistant"
    image_id: int | None


def _special_id(slot: Any, tokenizer: PreTrainedTokenizer) -> int | None | bool:
    """The id a `{"bos_token"}`/`{"eos_token"}` slot adds (None: adds nothing, as the host does); False if other."""
    if not isinstance(slot, set) or len(slot) != 1 or not slot <= {"bos_token", "eos_token"}:
        return False
    return tokenizer.bos_token_id if "bos_token" in slot else tokenizer.eos_token_id


def _turn(slots: list[Any], tokenizer: PreTrainedTokenizer) -> TurnSlots | None:
    texts: list[str] = []
    trailing: list[int] = []
    for slot in slots:
        if isinstance(slot, str) and not trailing:
            texts.append(slot)
            continue
        token_id = _special_id(slot, tokenizer)
        if token_id is False:
            return None
        if token_id is not None:
            trailing.append(token_id)
    text = "".join(texts)
    if text.count(CONTENT) != 1 or "{{" in text.replace(CONTENT, ""):
        return None
    before, after = text.split(CONTENT)
    return TurnSlots(before=before, after=after, trailing=tuple(trailing))


def slot_layout(template: Template, tokenizer: PreTrainedTokenizer) -> SlotLayout | None:
    prefix = [_special_id(slot, tokenizer) for slot in template.format_prefix.slots]
    system, user, assistant = (_turn(formatter.slots, tokenizer) for formatter in
                               (template.format_system, template.format_user, template.format_assistant))
    if False in prefix or None in (system, user, assistant) or system.trailing:
        return None
    image_token = template.mm_plugin.image_token
    image_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
    return SlotLayout(prefix=tuple(token_id for token_id in prefix if token_id is not None), system=system,
                      turns={"user": user, "assistant": assistant}, image_id=image_id)
