"""What the training callback reaches in transformers and accelerate: the `report_to` registry it enters, the
dataloader wrapper it looks through, the attention implementation it reads. `require_for` stops a run whose options
need a seam that does not fit, at `on_init_end`, before the data is read.
"""

from __future__ import annotations

from typing import Any

from . import Seam, calls_by_name, has_parameters

INTEGRATIONS = "transformers.integrations.integration_utils"
REPORT_TO = "report_to: [llava_lf] (the training options and llava_lf_training.json)"
MODALITY = "group_by_modality (the data-order check)"
ATTENTION = "sdpa_backend and the report's attention backends"
HOOKS = ["on_init_end", "on_train_begin", "on_train_end"]


def _report_to() -> list[str]:
    import importlib

    from transformers import TrainerCallback

    integrations = importlib.import_module(INTEGRATIONS)
    misfits = [] if isinstance(getattr(integrations, "INTEGRATION_TO_CALLBACK", None), dict) else [
        "INTEGRATION_TO_CALLBACK is not a dict"]
    misfits += calls_by_name(integrations.get_reporting_integration_callbacks, "INTEGRATION_TO_CALLBACK")
    for hook in HOOKS:
        misfits += has_parameters(getattr(TrainerCallback, hook), ["self", "args", "state", "control"])
    return misfits


def _base_dataloader() -> list[str]:
    from accelerate.data_loader import DataLoaderAdapter

    return calls_by_name(DataLoaderAdapter.__init__, "base_dataloader")


def _attn_implementation() -> list[str]:
    from transformers import PretrainedConfig

    found = getattr(PretrainedConfig(attn_implementation="sdpa"), "_attn_implementation", None)
    return [] if found == "sdpa" else [f"PretrainedConfig(attn_implementation='sdpa')._attn_implementation is {found!r}"]


SEAMS = [
    Seam(REPORT_TO, f"{INTEGRATIONS}.INTEGRATION_TO_CALLBACK", INTEGRATIONS, _report_to,
         ours="training/__init__.py: register_training_callback; training/callback.py overrides TrainerCallback's "
              + ", ".join(HOOKS)),
    Seam(MODALITY, "accelerate.data_loader.DataLoaderAdapter.base_dataloader", "accelerate.data_loader",
         _base_dataloader, ours="training/data_order.py: sampling looks through accelerate's wrapper to the sampler"),
    Seam(ATTENTION, "transformers.PretrainedConfig._attn_implementation", "transformers", _attn_implementation,
         ours="training/speed.py: attention_implementation; training/report.py: attention_backends"),
]


def require_for(options: Any) -> None:
    """Stop a run whose llava_lf options need a seam this host lacks (mm_projector_lr: seams/optimizer.py)."""
    needed = {MODALITY: options.group_by_modality, ATTENTION: options.sdpa_backend is not None}
    for seam in SEAMS:
        if needed.get(seam.feature):
            seam.require()
