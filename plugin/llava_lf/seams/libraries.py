"""Private attributes of libraries the plugin reads outside training: the Rust tokenizer behind a fast tokenizer
(fast template encoding, clearing a checkpoint's presets), argparse's list of actions (the eval table's options) and
the import system's mark of a module still executing (the import hook waits for it).
"""

from __future__ import annotations

from . import Seam, calls_by_name

FAST_ENCODING = "fast template encoding and the assembled tokenizer's presets"
EVAL_TABLE = "llava-lf eval table (each benchmark's accepted options)"
IMPORT_HOOK = "the import hook's after-import callbacks"


def _backend_tokenizer() -> list[str]:
    from transformers import PreTrainedTokenizerFast

    return calls_by_name(PreTrainedTokenizerFast.backend_tokenizer.fget, "_tokenizer")


def _parser_actions() -> list[str]:
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    action = parser.add_argument("--x")
    return [] if getattr(parser, "_actions", None) == [action] else ["ArgumentParser keeps no _actions list"]


def _spec_initializing() -> list[str]:
    from importlib import _bootstrap

    return calls_by_name(_bootstrap._load_unlocked, "_initializing")


SEAMS = [
    Seam(FAST_ENCODING, "transformers.PreTrainedTokenizerFast._tokenizer", "transformers", _backend_tokenizer,
         ours="templates/fast_encode.py: encode_text; assembly/language.py: strip_presets"),
    Seam(EVAL_TABLE, "argparse.ArgumentParser._actions", "argparse", _parser_actions,
         ours="evaluation/table.py: _accepted, _needs_judge"),
    Seam(IMPORT_HOOK, "importlib.machinery.ModuleSpec._initializing", "importlib", _spec_initializing,
         ours="_hook.py: after_import (a module still executing is not handed to a callback)"),
]
