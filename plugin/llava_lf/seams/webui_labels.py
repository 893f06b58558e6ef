"""Label `llamafactory-cli webchat`'s widgets on first load: under gradio 5 the host never names them until the
language is switched, so `Engine.resume` is wrapped to run `change_lang` after the page's first update (docs/design.md).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Generator
from typing import Any

from . import Seam, has_parameters, mentions

ENGINE_MODULE = "llamafactory.webui.engine"
LANGUAGE_ID = "top.lang"  # the language dropdown's element id, which `resume` sets from the user's config
PATCHED = "_llava_lf_labels_on_load"


def _engine_misfits(engine_class: type) -> list[str]:
    from llamafactory.webui.manager import Manager

    misfits = []
    resume = getattr(engine_class, "resume", None)
    if resume is None or not inspect.isgeneratorfunction(getattr(resume, "__wrapped__", resume)):
        misfits.append("Engine.resume is not a generator method")
    else:
        misfits += has_parameters(getattr(resume, "__wrapped__", resume), ["self"])
    if not callable(getattr(engine_class, "change_lang", None)):
        misfits.append("Engine has no change_lang")
    else:
        misfits += has_parameters(engine_class.change_lang, ["self", "lang"])
    if not callable(getattr(Manager, "get_elem_by_id", None)):
        misfits.append("Manager has no get_elem_by_id")
    return misfits


def _checks() -> list[str]:
    import importlib

    return _engine_misfits(importlib.import_module(ENGINE_MODULE).Engine)


def _language_checks() -> list[str]:
    import importlib

    resume = importlib.import_module(ENGINE_MODULE).Engine.resume
    return mentions(getattr(resume, "__wrapped__", resume), LANGUAGE_ID)


FEATURE = "web UI labels on first load"
SEAM = Seam(feature=FEATURE, symbol=f"{ENGINE_MODULE}.Engine.resume", module=ENGINE_MODULE, checks=_checks,
            ours="seams/webui_labels.py wraps it")
SEAMS = [
    SEAM,
    Seam(feature=FEATURE, symbol=f"llamafactory.webui.manager.Manager.get_elem_by_id({LANGUAGE_ID!r})",
         module=ENGINE_MODULE, checks=_language_checks,
         ours="seams/webui_labels.py: _language (the language the page starts in)"),
]


def label_engine_module(module: Any) -> None:
    """Label the web UI's pages once its engine module has executed (the hook runs this in web UI processes only:
    nothing else imports the engine)."""
    misfits = [misfit for seam in SEAMS for misfit in seam.check()]
    if misfits:  # another host's page may differ: leave it as the host made it
        SEAM.say_once(misfits)
        return
    label_on_load(module.Engine)


def label_on_load(engine_class: type) -> None:
    """Make `engine_class.resume` also send the labels of the language it starts the page in."""
    resume = engine_class.resume
    if getattr(resume, PATCHED, False):
        return

    @functools.wraps(resume)
    def resume_labelled(self) -> Generator[dict, None, None]:
        updates = resume(self)
        first = next(updates, None)
        if first is None:
            return
        yield first
        yield self.change_lang(_language(self, first))
        yield from updates

    setattr(resume_labelled, PATCHED, True)
    engine_class.resume = resume_labelled


def _language(engine: Any, update: dict) -> str:
    """The language `resume` set on the dropdown (from the user's saved config, else English)."""
    try:
        dropdown = engine.manager.get_elem_by_id(LANGUAGE_ID)
    except KeyError:
        return "en"
    value = getattr(update.get(dropdown), "value", None)
    return value if isinstance(value, str) and value else "en"
