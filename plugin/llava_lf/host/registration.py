"""Register our templates and mm plugins with the host, idempotently (the host raises on duplicates)."""

from __future__ import annotations


def register_all() -> list[str]:
    """Register what the host lacks and apply the seams that fit; return the names newly registered here."""
    from llamafactory.data import mm_plugin as host_plugins
    from llamafactory.data import template as host_templates

    from llava_lf.training import register_training_callback

    added = register_training_callback()  # `report_to: [llava_lf]`; independent of the modules below
    from llava_lf.templates import conversation, mm_plugin

    from . import exit_after_generation
    from .patches import dataset_run, webui_labels

    exit_after_generation.install()  # chat processes exit after the answer's thread, not inside it (see that module)
    dataset_run.install()  # turn fitting: cutoff_len and the output folder reach our templates (see that module)
    webui_labels.install()  # the web UI's widgets named on first load (see that module)

    for name, plugin_class in mm_plugin.PLUGINS.items():
        if name not in host_plugins.PLUGINS:
            host_plugins.register_mm_plugin(name, plugin_class)
            added.append(name)
    for name, register in conversation.TEMPLATES.items():
        if name not in host_templates.TEMPLATES:
            register()
            added.append(name)
    return added


def registered_names() -> list[str]:
    """Our template names as the host currently sees them (empty if the hook did not run)."""
    from llamafactory.data.template import TEMPLATES

    from llava_lf.templates.conversation import TEMPLATES as ours

    return [name for name in ours if name in TEMPLATES]
