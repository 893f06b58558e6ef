"""Label `llamafactory-cli webchat`'s widgets on first load: under gradio 5 the host never names them until the
language is switched, so `Engine.resume` is wrapped to run `change_lang` after the page's first update (docs/design.md).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import sys
from collections.abc import Callable, Generator
from typing import Any

from . import Seam, has_parameters

ENGINE_MODULE = "llamafactory.webui.engine"
WEBUI_PACKAGE = "llamafactory.webui"
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


SEAM = Seam(feature="web UI labels on first load", symbol=f"{ENGINE_MODULE}.Engine.resume", checks=_checks)


def install() -> None:
    """Patch the web UI's engine now if it is imported, or right after its import in a web UI process."""
    if WEBUI_PACKAGE not in sys.modules and ENGINE_MODULE not in sys.modules:
        return
    module = sys.modules.get(ENGINE_MODULE)
    if module is not None and hasattr(module, "Engine"):
        _label_if_it_fits(module.Engine)
    elif WEBUI_PACKAGE in sys.modules and not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(ENGINE_MODULE, lambda module: _label_if_it_fits(module.Engine)))


def _label_if_it_fits(engine_class: type) -> None:
    misfits = _engine_misfits(engine_class)
    if misfits:  # another host's page may differ: leave it as the host made it
        SEAM.say_once(misfits)
        return
    label_on_load(engine_class)


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
        dropdown = engine.manager.get_elem_by_id("top.lang")
    except KeyError:
        return "en"
    value = getattr(update.get(dropdown), "value", None)
    return value if isinstance(value, str) and value else "en"


class _AfterImport(importlib.abc.MetaPathFinder):
    """A one-shot finder: run `then(module)` once `name` has executed; never fails the import."""

    def __init__(self, name: str, then: Callable[[Any], None]):
        self._name, self._then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self._name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, then = spec.loader, self._then

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                module.__loader__ = loader
                loader.exec_module(module)
                try:
                    then(module)
                except Exception as exc:  # a changed host must not break the web UI: it only stays unlabelled
                    sys.stderr.write(f"llava-lf: web UI labels not set on load ({exc!r})\n")

        spec.loader = _Loader()
        return spec
