"""The plugin's training options for `llamafactory-cli train`: projector learning rate, modality grouping.

A YAML turns them on with `report_to: [llava_lf]` and sets them in `optim_args`
(`mm_projector_lr=2.0e-5,group_by_modality=true`); see docs/recipe.md for why they travel there.
"""

from __future__ import annotations

REPORT_TO_NAME = "llava_lf"


def register_training_callback() -> list[str]:
    """Make `report_to: [llava_lf]` select our callback (transformers' reporting-integration registry), and install
    the exit handler of distributed workers (quiet_exit: it waits only in processes torchrun started)."""
    from transformers.integrations import integration_utils

    from .quiet_exit import install as install_quiet_exit

    install_quiet_exit()

    if REPORT_TO_NAME in integration_utils.INTEGRATION_TO_CALLBACK:
        return []
    from .callback import LlavaTrainingCallback

    integration_utils.INTEGRATION_TO_CALLBACK[REPORT_TO_NAME] = LlavaTrainingCallback
    return [REPORT_TO_NAME]
