"""Register our templates, mm plugin and `report_to` callback with the host, idempotently (the host raises on
duplicates), after checking the seams they rely on (llava_lf.seams)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType


def register_all() -> list[str]:
    """Check the seams whose modules are loaded, register what the host lacks and apply the seams that fit; return
    the names newly registered here."""
    from llamafactory.data import mm_plugin as host_plugins
    from llamafactory.data import template as host_templates

    from llava_lf.seams import adapter_load, dataset_run, exit_after_generation, registry, trainer
    from llava_lf.training import register_training_callback
    from llava_lf.training.image_newline import restore_from_adapters

    registry.check_loaded()  # one stderr line per feature that does not fit
    # `report_to: [llava_lf]`; where the registry differs, transformers refuses the name before training starts
    added = [] if registry.misfits(trainer.REPORT_TO) else register_training_callback()
    from llava_lf.templates import mm_plugin

    exit_after_generation.install()  # chat processes exit after the answer's thread, not inside it (see that module)
    adapter_load.install(restore_from_adapters)  # a LoRA adapter's image_newline (training/image_newline.py)
    dataset_run.install()  # turn fitting: cutoff_len and the output folder reach our templates (see that module)

    for name, plugin_class in mm_plugin.PLUGINS.items():
        if name not in host_plugins.PLUGINS:
            host_plugins.register_mm_plugin(name, plugin_class)
            added.append(name)
    for name, register in our_templates().items():
        if name not in host_templates.TEMPLATES:
            register()
            added.append(name)
    return added


def after_imports() -> dict[str, Callable[[ModuleType], None]]:
    """What the import hook runs once a module has executed: the checks of seams whose module was not loaded at
    registration (the trainer, the chat engine), and the web UI's labels (only web UI processes import its engine)."""
    import sys

    from llava_lf.seams import registry, webui_labels, zero3_wrapped_modules

    later = registry.checks_after_import([seam for seam in registry.ALL if seam.module not in sys.modules])
    later[webui_labels.ENGINE_MODULE] = webui_labels.label_engine_module  # checks its own seams, then labels
    later[zero3_wrapped_modules.MODULE] = zero3_wrapped_modules.install  # ZeRO-3 and PEFT's wrapped projector
    return later


def our_templates() -> dict[str, Callable[[], None]]:
    """Every template of ours by name, with the call that registers it (LLaVA-1.5's two, then NeXT's formats)."""
    from llava_lf.templates import conversation, next_formats

    return {**conversation.TEMPLATES, **next_formats.TEMPLATES}


def registered_names() -> list[str]:
    """Our template names as the host currently sees them (empty if the hook did not run)."""
    from llamafactory.data.template import TEMPLATES

    return [name for name in our_templates() if name in TEMPLATES]
