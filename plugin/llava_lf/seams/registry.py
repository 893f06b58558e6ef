"""Every declared seam in one list, and the three ways they are used: checked at registration (those whose module is
loaded), checked once a later module loads (the hook's after-import callbacks), required by a run that needs a feature.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

from . import (
    Seam,
    adapter_load,
    dataset_run,
    exit_after_generation,
    libraries,
    optimizer,
    templates,
    trainer,
    webui_labels,
)
from .zero3_wrapped_modules import SEAM as ZERO3_WRAPPED_MODULES

ALL: list[Seam] = [dataset_run.SEAM, adapter_load.SEAM, *optimizer.SEAMS, *webui_labels.SEAMS, exit_after_generation.SEAM,
                   *templates.SEAMS, *trainer.SEAMS, *libraries.SEAMS, ZERO3_WRAPPED_MODULES]


def check_loaded() -> list[Seam]:
    """Check each seam whose module is imported, saying once per feature what does not fit; return the others."""
    later = []
    for seam in ALL:
        if seam.module in sys.modules:
            seam.check_and_say()
        else:
            later.append(seam)
    return later


def checks_after_import(seams: list[Seam]) -> dict[str, Callable[[ModuleType], None]]:
    """One callback per module, checking its seams once it has executed."""
    by_module: dict[str, list[Seam]] = {}
    for seam in seams:
        by_module.setdefault(seam.module, []).append(seam)

    def checker(waiting: list[Seam]) -> Callable[[ModuleType], None]:
        def check_seams(module: ModuleType) -> None:
            for seam in waiting:
                seam.check_and_say()

        return check_seams

    return {module: checker(waiting) for module, waiting in by_module.items()}


def misfits(feature: str) -> list[str]:
    return [misfit for seam in ALL if seam.feature == feature for misfit in seam.check()]


def require(feature: str) -> None:
    """Stop a run that needs `feature` when any of its seams does not fit."""
    for seam in ALL:
        if seam.feature == feature:
            seam.require()
