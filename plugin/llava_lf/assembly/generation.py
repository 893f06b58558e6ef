"""The language model's `generation_config.json`, carried into the checkpoint in a form transformers will save.

Released models ship files older transformers accepted and the current one's strict save refuses, e.g.
lmsys/vicuna-7b-v1.5: `temperature: 0.9, top_p: 0.6` without `do_sample`. Such values never applied (generation
without `do_sample` is greedy), so they are left out, generation stays greedy as it was, and the report says
so in one line. Anything else the strict check refuses is an error that names the file.
"""

from __future__ import annotations

from pathlib import Path

from .spec import AssemblyError

# Values that only sampling uses, and values that only beam search uses (validate() refuses them otherwise).
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff")
BEAM_ONLY = ("early_stopping", "length_penalty")
NEUTRAL_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
           "early_stopping": False, "length_penalty": 1.0}


def load_generation_config(path: Path, config, role: str):
    """The model's generation config (or one made from its config), without unused settings."""
    from transformers import GenerationConfig

    file = path / "generation_config.json"
    if not file.is_file():
        return GenerationConfig.from_model_config(config)
    try:
        return GenerationConfig.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        raise AssemblyError(f"{role} {file}: not a usable generation config ({error}); fix it or delete it "
                            "(the checkpoint then gets one made from config.json)") from error


def _unused(generation_config) -> dict[str, list[str]]:
    """Settings that the generation mode the file selects ignores, by the mode they belong to."""
    def set_apart(names: tuple[str, ...]) -> list[str]:
        return [name for name in names if getattr(generation_config, name, None) not in (None, NEUTRAL_SAMPLING.get(name))]

    unused = {}
    if generation_config.do_sample is not True:
        unused["sampling (do_sample)"] = set_apart(SAMPLING_ONLY)
    if generation_config.num_beams in (None, 1):
        unused["beam search (num_beams > 1)"] = set_apart(BEAM_ONLY)
    return {mode: names for mode, names in unused.items() if names}


def make_savable(generation_config, where: str) -> list[str]:
    """Leave out settings the file's own mode ignores; return a note per mode saying so."""
    notes = []
    for mode, names in _unused(generation_config).items():
        values = ", ".join(f"{name} {getattr(generation_config, name)}" for name in names)
        notes.append(f"{where}: left out {values}: only {mode} uses them and the file does not turn it on "
                     "(generation stays as it was); pass them to generate() to use them")
        for name in names:
            setattr(generation_config, name, None)
    try:
        generation_config.validate(strict=True)
    except ValueError as error:
        raise AssemblyError(f"{where}: transformers refuses to save this generation config ({error}); "
                            "fix the file or delete it") from error
    return notes
