"""Lazy registration hook, run by `llava_lf.pth` in every interpreter: it registers our templates as soon as
`llamafactory.data.template` is imported, since the host re-launches itself (docs/design.md).

The one after-import finder of the package: `after_import(name, then)` runs `then(module)` once a module has executed.
Registration uses it for the host's template module, and for the seams whose modules load later (the trainer, the
chat engine, the web UI). Stdlib only, never raises, one warning line on failure; `LLAVA_LF_DISABLE_HOOK=1` opts out.
"""

import os
import sys

TARGET_MODULE = "llamafactory.data.template"
DISABLE_ENV = "LLAVA_LF_DISABLE_HOOK"

_pending = {}  # module name -> [then(module)], run once that module has executed


def _warn(message: str) -> None:
    sys.stderr.write(f"llava-lf: {message}; set {DISABLE_ENV}=1 to silence\n")


def _run(name, thens, module) -> None:
    for then in thens:
        try:
            then(module)
        except Exception as exc:  # a broken or changed host must never break the interpreter
            _warn(f"after importing {name}: {getattr(then, '__qualname__', then)} failed ({exc!r})")


def _register(module) -> None:
    try:
        from llava_lf.host.registration import after_imports, register_all

        register_all()
    except Exception as exc:
        _warn(f"templates not registered ({exc!r})")
        return
    for name, then in after_imports().items():
        after_import(name, then)


class _RunAfterLoader:
    """Delegates to the real loader and runs the pending callbacks once the module has executed."""

    def __init__(self, loader, name, thens):
        self._loader, self._name, self._thens = loader, name, thens

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader  # keep inspect/linecache working on the host module
        try:
            self._loader.exec_module(module)
        except BaseException:  # the import failed: a later import of the module runs them
            for then in self._thens:
                after_import(self._name, then)
            raise
        _run(self._name, self._thens, module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class AfterImport:
    """A meta-path finder that answers nothing itself: for a pending module it wraps the loader the others find."""

    def find_spec(self, fullname, path=None, target=None):
        thens = _pending.pop(fullname, None)
        if thens is None:
            return None
        if not _pending:
            uninstall()
        try:
            for finder in sys.meta_path:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(fullname, path, target) if find_spec and finder is not self else None
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _RunAfterLoader(spec.loader, fullname, thens)
            return spec
        except Exception as exc:
            _warn(f"import hook failed ({exc!r})")
            return None


def after_import(name: str, then) -> None:
    """Run `then(module)` once module `name` has executed: now if it has, else right after its import."""
    module = sys.modules.get(name)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
        _run(name, [then], module)
        return
    thens = _pending.setdefault(name, [])
    if then not in thens:  # the .pth may run twice (a site dir listed twice); callbacks run once
        thens.append(then)
    if not any(isinstance(finder, AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, AfterImport())


def is_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def install() -> None:
    """Register once the host's template module has executed (now, if the host is already imported)."""
    if not is_disabled():
        after_import(TARGET_MODULE, _register)


def uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, AfterImport)]
