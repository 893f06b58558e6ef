"""An on-disk cache of chat replies keyed by a hash of the request, so asking again costs nothing.

One JSON file per request under `folder/<2 hex>/<sha256>.json`, written to a temporary name and renamed
so a killed run never leaves half an entry. An entry that does not read back is a miss (and is
rewritten), never an error: the cache only saves money, it is not the record of anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

logger = logging.getLogger(__name__)


class CacheEntry(TypedDict, total=False):
    request: dict  # what was asked (model, messages, sampling settings)
    reply: str
    served_model: str
    finish_reason: str | None


def request_digest(payload: dict) -> str:
    """sha256 of the request as canonical JSON: the same question with the same settings, the same key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ReplyCache:
    def __init__(self, folder: Path, redact: Callable[[str], str]):
        self.folder = folder
        self._redact = redact  # applied to the whole entry's text before it reaches the disk

    def _path(self, payload: dict) -> Path:
        digest = request_digest(payload)
        return self.folder / digest[:2] / f"{digest}.json"

    def get(self, payload: dict) -> CacheEntry | None:
        path = self._path(payload)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as problem:
            logger.warning("reply cache: %s does not read back (%s); asking again", path, type(problem).__name__)
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("reply"), str):
            logger.warning("reply cache: %s is not a cache entry; asking again", path)
            return None
        return entry

    def put(self, payload: dict, entry: CacheEntry) -> None:
        path = self._path(payload)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")  # its own name per writer, any thread
        partial.write_text(self._redact(json.dumps(entry, ensure_ascii=False, indent=1)), encoding="utf-8")
        partial.replace(path)  # atomic: readers see the old entry or the new one
