"""Check one LLaVA record's structure, collecting every problem with its field and fix, and normalise it as the
original LLaVA code reads it (docs/data.md). The checks run on whole lists; per-turn loops only explain a problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .reader import OversizedNumber, Unparsable
from .records import IMAGE_PLACEHOLDER, ROLE_GPT, ROLE_HUMAN, ROLE_SYSTEM, LlavaTurn
from .report import Problem

_ROLES = frozenset((ROLE_HUMAN, ROLE_GPT, ROLE_SYSTEM))
_TURN_FIX = "write each turn as {\"from\": \"human\"|\"gpt\", \"value\": \"...\"}"
# A lone UTF-16 surrogate: JSON lets a file write one as an escape ("\\ud800"), but it is not text
# (it cannot be encoded as UTF-8, so no tokenizer or JSON writer takes it).
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_FIX = ("repair the '\\u' escape (four hex digits): a character outside the Basic Multilingual Plane is written as "
                  "a pair, e.g. \"\\ud83d\\ude00\"")


def surrogate_at(text: str) -> int | None:
    """Position of the first lone surrogate in `text`, or None (one C-level scan; ASCII returns at once)."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return found.start() if found is not None else None


def printable(text: str) -> str:
    """`text` with lone surrogates written as escapes, so it can be printed and written as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class Normalised:
    turns: list[LlavaTurn]  # an optional system turn, then human/gpt pairs
    images: list[str]  # as written in the source, relative to the image folder
    changes: list[str] = field(default_factory=list)


def record_id(record: object, problems: list[Problem]) -> str | None:
    """The record's id as a string; a problem when it is present but neither a string nor an integer."""
    if type(record) is not dict or (value := record.get("id")) is None:
        return None
    if type(value) is str:
        if (position := surrogate_at(value)) is not None:
            problems.append(Problem("malformed", "id", f"a lone surrogate {value[position]!r} at character {position}",
                                    _SURROGATE_FIX))
            return printable(value)  # still names the record in the report
        return value
    if type(value) is int:
        return str(value)
    if type(value) is OversizedNumber:
        problems.append(Problem("malformed", "id", f"an integer of {len(value):,} digits, longer than Python reads",
                                "write the id as a string (or a shorter integer)"))
        return f"{value[:20]}...({len(value):,} digits)"
    problems.append(Problem("malformed", "id", f"expected a string or an integer, got {_json_type(value)}",
                            "write the id as a string, e.g. \"000000033471\""))
    return None


def duplicate_id_problem(output_id: str, given: bool) -> Problem:
    """The converter's `duplicate_id` rejection: the id a record would be written under is taken."""
    if given:
        return Problem("duplicate_id", "id", f"id {output_id!r:.120} appeared earlier in the file (as an id, or as "
                       "the index a record without an id is written under)",
                       "give every record a unique id (e.g. append a suffix to repeats)")
    return Problem("duplicate_id", "id", f"the record has no id, so it would be written under its index "
                   f"{output_id!r}, which an earlier record has as its id", "give this record a unique id")


def claim_output_id(seen, record: object, rid: str | None, index: int, problems: list[Problem]) -> str | None:
    """The id the converter writes the record under (its id, else its index), claimed in `seen` (`ids.SeenIds`).

    A record without an id is written under its index, so an index that an earlier id took (or the reverse)
    is a duplicate too; the problem is added to `problems`.
    """
    given = type(record) is dict and record.get("id") is not None
    output_id = rid if given else str(index)
    if output_id is not None and not seen.add(output_id):
        problems.append(duplicate_id_problem(output_id, given))
    return output_id


def too_long_problem(first_pair_tokens: int, cutoff_len: int) -> Problem:
    """The converter's `too_long` rejection: the first human/gpt pair alone is over the cutoff."""
    return Problem("too_long", "conversations", f"the first turn pair is {first_pair_tokens} tokens with its image "
                   f"tokens, over --cutoff-len {cutoff_len}",
                   "raise --cutoff-len (and cutoff_len in training) or shorten the first turn")


def _json_type(value: object) -> str:
    """How the file wrote a value, in JSON's words."""
    if type(value) is OversizedNumber:
        return f"an integer of {len(value):,} digits"
    return {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
            bool: "true/false", type(None): "null"}.get(type(value), type(value).__name__)


def record_images(record: object, problems: list[Problem]) -> list[str] | None:
    """The record's image paths ([] for a text-only sample), or None with a problem when mistyped."""
    if type(record) is not dict or (image := record.get("image")) is None:
        return []
    if type(image) is str and image.strip():
        return [image] if _paths_are_text([image], problems, "image") else None
    if type(image) is list and all(type(item) is str and item.strip() for item in image):
        return image if _paths_are_text(image, problems) else None
    problems.append(Problem("malformed", "image", f"expected a path or a list of paths, got {image!r:.80}",
                            "write 'image' as \"folder/file.jpg\" (or a list of such paths), or leave it out "
                            "for a text-only sample"))
    return None


def _paths_are_text(paths: list[str], problems: list[Problem], field: str | None = None) -> bool:
    """No NUL byte (no file system takes one) and no lone surrogate in any path."""
    joined = "\0".join(paths)
    if joined.count("\0") == len(paths) - 1 and surrogate_at(joined) is None:  # only the separators
        return True
    for position, path in enumerate(paths):
        where = field or f"image[{position}]"
        if "\0" in path:
            problems.append(Problem("malformed", where, f"the path {path!r:.120} holds a NUL character",
                                    "remove the NUL (\\u0000) from the image path"))
        elif (at := surrogate_at(path)) is not None:
            problems.append(Problem("malformed", where, f"the path {path!r:.120} holds a lone surrogate "
                                    f"{path[at]!r}", _SURROGATE_FIX))
    return False


def normalise(record: object, images: list[str] | None, plain: bool, problems: list[Problem]) -> Normalised | None:
    """The normalised record (`images` from `record_images`), or None with `problems` filled in."""
    if type(record) is Unparsable:
        problems.append(Problem("malformed", "<record>", record.message,
                                "write the record as an object with 'conversations' (and 'image'), a few levels deep"))
        return None
    if type(record) is not dict:
        problems.append(Problem("malformed", "<record>", f"expected an object, got {_json_type(record)}",
                                "make each element a JSON object with 'conversations' (and 'image')"))
        return None
    split = _turns(record, problems)
    if split is None:
        return None
    turns, roles, values = split
    changes: list[str] = []
    start, end = _order_roles(turns, roles, values, problems, changes)
    if start == end:
        return None
    system = turns[0]["from"] == ROLE_SYSTEM
    kept = turns[:1] + turns[start:end] if system else turns[start:end]
    if images is not None:
        _place_images(kept, start - system, system, len(images), problems, changes)
        if plain:
            _check_plain(kept, len(images), problems)
    return Normalised(kept, images, changes) if not problems else None


def _turns(record: dict, problems: list[Problem]) -> tuple[list[LlavaTurn], list[str], list[str]] | None:
    """(turns, their roles, their texts), or None with the problems added."""
    turns = record.get("conversations")
    if type(turns) is not list or not turns:
        got = "nothing" if turns is None else f"{type(turns).__name__} {turns!r:.60}"
        problems.append(Problem("malformed", "conversations", f"expected a non-empty list of turns, got {got}",
                                "give the record 'conversations': [{\"from\": \"human\", \"value\": ...}, "
                                "{\"from\": \"gpt\", \"value\": ...}]"))
        return None
    try:
        roles = [turn["from"] for turn in turns]
        values = [turn["value"] for turn in turns]
        well_formed = _ROLES.issuperset(roles) and set(map(type, values)) == {str}
    except (TypeError, KeyError):  # a turn that is not an object, lacks a key, or has an unhashable role
        well_formed = False
    if not well_formed:
        for position, turn in enumerate(turns):
            role = turn.get("from") if type(turn) is dict else None
            value = turn.get("value") if type(turn) is dict else None
            if type(value) is not str:
                problems.append(Problem("malformed", f"conversations[{position}]",
                                        f"expected {{\"from\": ..., \"value\": \"text\"}}, got {turn!r:.80}", _TURN_FIX))
            elif type(role) is not str or role not in _ROLES:  # a list or object as the role is not hashable
                problems.append(Problem("malformed", f"conversations[{position}].from",
                                        f"role {role!r:.80} is not one of human, gpt, system", _TURN_FIX))
        return None
    if surrogate_at("".join(values)) is not None:
        for position, turn in enumerate(turns):
            if (at := surrogate_at(turn["value"])) is not None:
                problems.append(Problem("malformed", f"conversations[{position}].value",
                                        f"a lone surrogate {turn['value'][at]!r} at character {at}", _SURROGATE_FIX))
        return None
    if set(map(len, turns)) == {2}:  # only from/value: the dicts are shared (they are never mutated)
        return list(turns), roles, values
    # extra keys are not carried over
    return [{"from": role, "value": value} for role, value in zip(roles, values)], roles, values


def _order_roles(turns: list[LlavaTurn], roles: list[str], values: list[str], problems: list[Problem],
                 changes: list[str]) -> tuple[int, int]:
    """[start, end) of the human/gpt pairs, after an optional system turn; repairs counted. start == end: rejected."""
    start = 1 if roles[0] == ROLE_SYSTEM else 0
    if start < len(roles) and roles[start] == ROLE_GPT:
        start += 1
        changes.append("leading_gpt_dropped")
    end = len(roles)
    if (end - start) % 2 and roles[-1] == ROLE_HUMAN:
        end -= 1
        changes.append("trailing_human_dropped")
    if end - start < 2:
        problems.append(Problem("roles", "conversations", f"no human/gpt pair among {len(turns)} turn(s)",
                                "give the record at least one human question followed by a gpt answer"))
        return start, start
    humans, answers = roles[start:end:2], roles[start + 1:end:2]
    if humans.count(ROLE_HUMAN) != len(humans) or answers.count(ROLE_GPT) != len(answers):
        position = next(p for p in range(start, end) if roles[p] != (ROLE_HUMAN if (p - start) % 2 == 0 else ROLE_GPT))
        due = ROLE_HUMAN if (position - start) % 2 == 0 else ROLE_GPT
        problems.append(Problem("roles", f"conversations[{position}].from", f"got {roles[position]!r} where {due!r} "
                                "was due", "alternate human and gpt turns (a system turn may only come first)"))
    system = roles[0] == ROLE_SYSTEM
    if not all(map(str.strip, values[start:end])) or (system and not values[0].strip()):
        positions = ([0] if system else []) + list(range(start, end))
        problems.extend(Problem("empty_turn", f"conversations[{position}].value", "the turn has no text",
                                "fill in the turn or remove the record")
                        for position in positions if not values[position].strip())
    return start, end


def _place_images(turns: list[LlavaTurn], offset: int, system: bool, n_images: int, problems: list[Problem],
                  changes: list[str]) -> None:
    """Placeholder count must equal the image count, in human turns only; one image moves to the front.

    `turns[k]` came from `conversations[k + offset]`, except a system turn, which came from position 0.
    """
    human_text = "\0".join([turn["value"] for turn in turns if turn["from"] == ROLE_HUMAN])
    other_text = "\0".join([turn["value"] for turn in turns if turn["from"] != ROLE_HUMAN])
    if IMAGE_PLACEHOLDER in other_text:
        for position, turn in enumerate(turns):
            if turn["from"] != ROLE_HUMAN and IMAGE_PLACEHOLDER in turn["value"]:
                source = 0 if system and position == 0 else position + offset
                problems.append(Problem("image_in_answer", f"conversations[{source}].value",
                                        f"a {turn['from']} turn contains the literal '{IMAGE_PLACEHOLDER}'",
                                        f"remove '{IMAGE_PLACEHOLDER}' from the {turn['from']} text (only human "
                                        "turns may hold it)"))
    found = human_text.count(IMAGE_PLACEHOLDER)
    if found != n_images:
        fix = ("add the 'image' field or remove the placeholders" if n_images == 0 else
               f"put '{IMAGE_PLACEHOLDER}' in the first human turn" if found == 0 and n_images == 1 else
               f"put exactly one '{IMAGE_PLACEHOLDER}' in the human turns per image")
        problems.append(Problem("placeholder_count", "conversations",
                                f"{found} '{IMAGE_PLACEHOLDER}' placeholder(s) for {n_images} image(s)", fix))
    elif n_images == 1 and not problems:
        for position, turn in enumerate(turns):
            if IMAGE_PLACEHOLDER in turn["value"]:
                moved = f"{IMAGE_PLACEHOLDER}\n{turn['value'].replace(IMAGE_PLACEHOLDER, '').strip()}".strip()
                if moved != turn["value"]:
                    turns[position] = {"from": turn["from"], "value": moved}  # a new dict: the source stays as read
                    changes.append("image_moved_to_front")
                break


def _check_plain(turns: list[LlavaTurn], n_images: int, problems: list[Problem]) -> None:
    """Stage-1 data as LLaVA's plain format reads it: one image, one human/gpt pair, no system."""
    system = turns[0]["from"] == ROLE_SYSTEM
    if n_images != 1 or len(turns) != 2 or system:
        shape = f"{n_images} image(s), {len(turns)} turn(s)" + (" with a system turn" if system else "")
        problems.append(Problem("plain_shape", "conversations", f"llava_plain takes one image and one human/gpt "
                                f"pair; this record has {shape}",
                                "convert stage-2 data with --template llava_v1, or give the caption sample one "
                                "image and one pair"))
