"""The raw formats, typed: LLaVA records in, sharegpt records out."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from llava_lf.formats import IMAGE_TOKEN

IMAGE_PLACEHOLDER = IMAGE_TOKEN  # one definition of the placeholder, shared with the templates
ROLE_HUMAN, ROLE_GPT, ROLE_SYSTEM = "human", "gpt", "system"
# The templates a converted dataset may train with: LLaVA-1.5's two, and NeXT's per language model.
Template = Literal["llava_v1", "llava_plain", "llava_mistral_instruct", "llava_chatml_direct", "llava_llama_3"]


# "from" is a Python keyword, so these use the functional TypedDict syntax.
LlavaTurn = TypedDict("LlavaTurn", {"from": str, "value": str})


class SharegptRecord(TypedDict):
    id: str
    conversations: list[LlavaTurn]
    images: list[str]
    data_source: NotRequired[str | None]  # parquet rows' source set, kept for the data card


def dataset_info_entry(file_name: str) -> dict:
    """How the host reads what we write (sharegpt, LLaVA role tags, an explicit images column)."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": ROLE_HUMAN,
            "assistant_tag": ROLE_GPT,
            "system_tag": ROLE_SYSTEM,
        },
    }
