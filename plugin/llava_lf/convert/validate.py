"""Check one LLaVA record's structure and normalise it the way the original LLaVA code reads it.

Every problem found in a record is collected (not just the first), each naming the field and the fix.
Normalisation follows LLaVA: `<image>` moves to the front of its turn as `<image>\\n`, a leading gpt
turn is dropped; we also drop an unanswered last human turn. Each such change is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN, ROLE_SYSTEM, LlavaTurn
from .report import Problem

_ROLES = (ROLE_HUMAN, ROLE_GPT, ROLE_SYSTEM)


@dataclass(slots=True)
class Normalised:
    turns: list[LlavaTurn]  # an optional system turn, then human/gpt pairs
    images: list[str]  # as written in the source, relative to the image folder
    changes: list[str] = field(default_factory=list)


def record_id(record: object, problems: list[Problem]) -> str | None:
    """The record's id as a string; a problem when it is present but neither a string nor an integer."""
    if not isinstance(record, dict) or (value := record.get("id")) is None:
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    problems.append(Problem("malformed", "id", f"expected a string or an integer, got {type(value).__name__}",
                            "write the id as a string, e.g. \"000000033471\""))
    return None


def normalise(record: object, images: list[str] | None, plain: bool, problems: list[Problem]) -> Normalised | None:
    """The normalised record (`images` from `record_images`), or None with `problems` filled in."""
    if not isinstance(record, dict):
        problems.append(Problem("malformed", "<record>", f"expected an object, got {type(record).__name__}",
                                "make each element a JSON object with 'conversations' (and 'image')"))
        return None
    turns = _turns(record, problems)
    if turns is None:
        return None
    changes: list[str] = []
    positions = _order_roles(turns, problems, changes)
    turns = [turns[position] for position in positions]
    if images is not None and turns:
        _place_images(turns, positions, len(images), problems, changes)
        if plain:
            _check_plain(turns, len(images), problems)
    return Normalised(turns, images, changes) if not problems else None


def record_images(record: object, problems: list[Problem]) -> list[str] | None:
    """The record's image paths ([] for a text-only sample), or None with a problem when mistyped."""
    if not isinstance(record, dict):
        return []
    image = record.get("image")
    if image is None:
        return []
    images = [image] if isinstance(image, str) else image
    if isinstance(images, list) and all(isinstance(item, str) and item.strip() for item in images):
        return images
    problems.append(Problem("malformed", "image", f"expected a path or a list of paths, got {image!r:.80}",
                            "write 'image' as \"folder/file.jpg\" (or a list of such paths), or leave it out "
                            "for a text-only sample"))
    return None


def _turns(record: dict, problems: list[Problem]) -> list[LlavaTurn] | None:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        got = "nothing" if turns is None else f"{type(turns).__name__} {turns!r:.60}"
        problems.append(Problem("malformed", "conversations", f"expected a non-empty list of turns, got {got}",
                                "give the record 'conversations': [{\"from\": \"human\", \"value\": ...}, "
                                "{\"from\": \"gpt\", \"value\": ...}]"))
        return None
    cleaned: list[LlavaTurn] = []
    for position, turn in enumerate(turns):
        role = turn.get("from") if isinstance(turn, dict) else None
        value = turn.get("value") if isinstance(turn, dict) else None
        if not isinstance(value, str) or role not in _ROLES:
            what = (f"role {role!r} is not one of human, gpt, system" if isinstance(value, str) else
                    f"expected {{\"from\": ..., \"value\": \"text\"}}, got {turn!r:.80}")
            problems.append(Problem("malformed", f"conversations[{position}]", what,
                                    "write each turn as {\"from\": \"human\"|\"gpt\", \"value\": \"...\"}"))
            continue
        cleaned.append({"from": role, "value": value})
    return cleaned if len(cleaned) == len(turns) else None


def _order_roles(turns: list[LlavaTurn], problems: list[Problem], changes: list[str]) -> list[int]:
    """Positions of the turns kept: system first (optional), then human/gpt pairs; repairs counted."""
    start = 1 if turns[0]["from"] == ROLE_SYSTEM else 0
    if start < len(turns) and turns[start]["from"] == ROLE_GPT:
        start += 1
        changes.append("leading_gpt_dropped")
    end = len(turns)
    if (end - start) % 2 and turns[-1]["from"] == ROLE_HUMAN:
        end -= 1
        changes.append("trailing_human_dropped")
    if end - start < 2:
        problems.append(Problem("roles", "conversations", f"no human/gpt pair among {len(turns)} turn(s)",
                                "give the record at least one human question followed by a gpt answer"))
        return []
    for position in range(start, end):
        expected = ROLE_HUMAN if (position - start) % 2 == 0 else ROLE_GPT
        if turns[position]["from"] != expected:
            problems.append(Problem("roles", f"conversations[{position}].from",
                                    f"got {turns[position]['from']!r} where {expected!r} was due",
                                    "alternate human and gpt turns (a system turn may only come first)"))
            break
    kept = ([0] if turns[0]["from"] == ROLE_SYSTEM else []) + list(range(start, end))
    for position in kept:
        if not turns[position]["value"].strip():
            problems.append(Problem("empty_turn", f"conversations[{position}].value", "the turn has no text",
                                    "fill in the turn or remove the record"))
    return kept


def _place_images(turns: list[LlavaTurn], positions: list[int], n_images: int, problems: list[Problem],
                  changes: list[str]) -> None:
    found = 0
    for position, turn in zip(positions, turns):
        count = turn["value"].count(IMAGE_PLACEHOLDER)
        if count and turn["from"] != ROLE_HUMAN:
            problems.append(Problem("image_in_answer", f"conversations[{position}].value",
                                    f"a {turn['from']} turn contains the literal '{IMAGE_PLACEHOLDER}'",
                                    f"remove '{IMAGE_PLACEHOLDER}' from the {turn['from']} text (only human turns "
                                    "may hold it)"))
        elif count:
            found += count
    if found != n_images:
        fix = ("add the 'image' field or remove the placeholders" if n_images == 0 else
               f"put '{IMAGE_PLACEHOLDER}' in the first human turn" if found == 0 and n_images == 1 else
               f"put exactly one '{IMAGE_PLACEHOLDER}' in the human turns per image")
        problems.append(Problem("placeholder_count", "conversations",
                                f"{found} '{IMAGE_PLACEHOLDER}' placeholder(s) for {n_images} image(s)", fix))
    elif n_images == 1 and not problems:
        for turn in turns:
            if IMAGE_PLACEHOLDER in turn["value"]:
                text = turn["value"].replace(IMAGE_PLACEHOLDER, "").strip()
                moved = f"{IMAGE_PLACEHOLDER}\n{text}".strip()
                if moved != turn["value"]:
                    turn["value"] = moved
                    changes.append("image_moved_to_front")


def _check_plain(turns: list[LlavaTurn], n_images: int, problems: list[Problem]) -> None:
    """Stage-1 data as LLaVA's plain format reads it: one image, one human/gpt pair, no system."""
    if n_images != 1 or len(turns) != 2 or turns[0]["from"] == ROLE_SYSTEM:
        shape = f"{n_images} image(s), {len(turns)} turn(s)" + (" with a system turn" if turns[0]["from"] == ROLE_SYSTEM else "")
        problems.append(Problem("plain_shape", "conversations", f"llava_plain takes one image and one human/gpt "
                                f"pair; this record has {shape}",
                                "convert stage-2 data with --template llava_v1, or give the caption sample one "
                                "image and one pair"))
