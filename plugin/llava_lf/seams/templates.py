"""The host's template and mm-plugin classes our templates subclass: each method we override or call by its private
name, checked by signature and by who calls it. A host that renamed `_encode` would otherwise skip our override and
change the stage-1 format silently; with these checks registration says so and `fix_special_tokens` (which the host
calls whenever it loads a template) stops the run that uses ours.
"""

from __future__ import annotations

from . import Seam, calls_by_name, has_fields, has_parameters, mentions

FEATURE = "templates llava_v1 / llava_plain (and the LLaVA-NeXT formats) and the llava_lf mm plugin"
TEMPLATE_MODULE, PLUGIN_MODULE = "llamafactory.data.template", "llamafactory.data.mm_plugin"
TEMPLATE, PLUGIN = f"{TEMPLATE_MODULE}.Template", f"{PLUGIN_MODULE}.LlavaPlugin"
ENCODE = ["self", "tokenizer", "messages", "system", "tools"]


def _template():
    from llamafactory.data.template import Template

    return Template


def _plugin():
    from llamafactory.data.mm_plugin import LlavaPlugin

    return LlavaPlugin


def _encode() -> list[str]:
    template = _template()
    return (has_parameters(template._encode, ENCODE) + calls_by_name(template.encode_multiturn, "_encode")
            + calls_by_name(template.encode_oneturn, "_encode"))


def _convert_elements_to_ids() -> list[str]:
    template = _template()
    return (has_parameters(template._convert_elements_to_ids, ["self", "tokenizer", "elements"])
            + calls_by_name(template._encode, "_convert_elements_to_ids"))


def _get_jinja_template() -> list[str]:
    template = _template()
    return (has_parameters(template._get_jinja_template, ["self", "tokenizer"])
            + calls_by_name(template.fix_jinja_template, "_get_jinja_template"))


def _fix_special_tokens() -> list[str]:
    from llamafactory.data import template as host

    return (has_parameters(host.Template.fix_special_tokens, ["self", "tokenizer"])
            + calls_by_name(host.get_template_and_fix_tokenizer, "fix_special_tokens"))


def _encode_multiturn() -> list[str]:
    from llamafactory.data.processor import SupervisedDatasetProcessor

    return (has_parameters(_template().encode_multiturn, ENCODE)
            + calls_by_name(SupervisedDatasetProcessor._encode_data_example, "encode_multiturn"))


def _template_fields() -> list[str]:
    from llamafactory.data import template as host

    fields = ["format_user", "format_assistant", "format_system", "format_prefix", "default_system", "efficient_eos",
              "mm_plugin"]
    keywords = ["name", "format_user", "format_assistant", "format_system", "format_prefix", "default_system",
                "mm_plugin", "template_class", "stop_words", "replace_eos"]
    import inspect

    taken = inspect.signature(host.register_template).parameters
    return has_fields(host.Template, fields) + [f"register_template takes no {name}" for name in keywords
                                                if name not in taken]


def _validate_input() -> list[str]:
    return has_parameters(_plugin()._validate_input, ["self", "processor", "images", "videos", "audios"])


def _validate_messages() -> list[str]:
    return has_parameters(_plugin()._validate_messages, ["self", "messages", "images", "videos", "audios"])


def _process_messages() -> list[str]:
    return has_parameters(_plugin().process_messages, ["self", "messages", "images", "videos", "audios", "processor"])


def _get_mm_inputs() -> list[str]:
    return has_parameters(_plugin().get_mm_inputs, ["self", "images", "videos", "audios", "imglens", "vidlens",
                                                    "audlens", "batch_ids", "processor"])


def _preprocess_image() -> list[str]:
    """Our NeXT count repeats `_preprocess_image`'s resize from the header size: the plugin must still resize there,
    from `image_max_pixels` / `image_min_pixels`, and `_get_mm_inputs` must still read those processor attributes."""
    from llamafactory.data.mm_plugin import BasePlugin

    plugin = _plugin()
    misfits = has_parameters(plugin._preprocess_image, ["self", "image", "image_max_pixels", "image_min_pixels",
                                                        "kwargs"])
    if plugin._preprocess_image is not BasePlugin._preprocess_image:
        misfits.append("LlavaPlugin overrides _preprocess_image: its resize is no longer the base plugin's")
    return (misfits + calls_by_name(plugin._regularize_images, "_preprocess_image")
            + mentions(BasePlugin._preprocess_image, "RGB") + mentions(plugin._get_mm_inputs, "image_max_pixels")
            + mentions(plugin._get_mm_inputs, "image_min_pixels"))


def _plugin_fields() -> list[str]:
    from llamafactory.data import mm_plugin as host

    misfits = has_fields(host.LlavaPlugin, ["image_token", "expand_mm_tokens"])
    return misfits + has_parameters(host.register_mm_plugin, ["name", "plugin_class"])


_CONVERSATION, _MM_PLUGIN = "templates/conversation.py", "templates/mm_plugin.py"
SEAMS = [
    Seam(FEATURE, f"{TEMPLATE}._encode", TEMPLATE_MODULE, _encode,
         ours=f"{_CONVERSATION}: LlavaTemplate._encode and PlainTemplate._encode override it, and call it by super()"),
    Seam(FEATURE, f"{TEMPLATE}._convert_elements_to_ids", TEMPLATE_MODULE, _convert_elements_to_ids,
         ours=f"{_CONVERSATION}: LlavaTemplate overrides it and calls it by super()"),
    Seam(FEATURE, f"{TEMPLATE}._get_jinja_template", TEMPLATE_MODULE, _get_jinja_template,
         ours=f"{_CONVERSATION}: LlavaTemplate and PlainTemplate override it (the exported chat template)"),
    Seam(FEATURE, f"{TEMPLATE}.fix_special_tokens", TEMPLATE_MODULE, _fix_special_tokens,
         ours=f"{_CONVERSATION}: LlavaTemplate overrides it (drops its memo; checks these seams)"),
    Seam(FEATURE, f"{TEMPLATE}.encode_multiturn", "llamafactory.data.processor", _encode_multiturn,
         ours=f"{_CONVERSATION}: LlavaTemplate overrides it (turn fitting) and calls it by super()"),
    Seam(FEATURE, f"{TEMPLATE_MODULE}.register_template", TEMPLATE_MODULE, _template_fields,
         ours=f"{_CONVERSATION}, templates/next_formats.py: register_llava_*, slot_layout reads the formats"),
    Seam(FEATURE, f"{PLUGIN}._validate_input", PLUGIN_MODULE, _validate_input,
         ours=f"{_MM_PLUGIN}: LlavaFastPlugin.process_messages calls it"),
    Seam(FEATURE, f"{PLUGIN}._validate_messages", PLUGIN_MODULE, _validate_messages,
         ours=f"{_MM_PLUGIN}: LlavaFastPlugin.process_messages calls it"),
    Seam(FEATURE, f"{PLUGIN}.process_messages", PLUGIN_MODULE, _process_messages,
         ours=f"{_MM_PLUGIN}: LlavaFastPlugin overrides it (counts image tokens from the config)"),
    Seam(FEATURE, f"{PLUGIN}.get_mm_inputs", PLUGIN_MODULE, _get_mm_inputs,
         ours=f"{_MM_PLUGIN}: LlavaFastPlugin overrides it (whole-image batches)"),
    Seam(FEATURE, f"{PLUGIN}._preprocess_image", PLUGIN_MODULE, _preprocess_image,
         ours=f"{_MM_PLUGIN}: a NeXT image's count repeats its resize from the header size (image_tokens.py)"),
    Seam(FEATURE, f"{PLUGIN_MODULE}.register_mm_plugin", PLUGIN_MODULE, _plugin_fields,
         ours=f"{_MM_PLUGIN}: LlavaFastPlugin reads image_token and expand_mm_tokens; registration registers it"),
]
