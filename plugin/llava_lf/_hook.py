"""Lazy registration hook, run by `llava_lf.pth` in every interpreter: it registers our templates as soon as
`llamafactory.data.template` is imported, since the host re-launches itself (docs/design.md).

Stdlib only, never raises, one warning line on failure; `LLAVA_LF_DISABLE_HOOK=1` opts out.
"""

import os
import sys

TARGET_MODULE = "llamafactory.data.template"
DISABLE_ENV = "LLAVA_LF_DISABLE_HOOK"


def _warn(message: str) -> None:
    sys.stderr.write(f"llava-lf: {message}; set {DISABLE_ENV}=1 to silence\n")


def _register_safely() -> None:
    try:
        from llava_lf.host.registration import register_all

        register_all()
    except Exception as exc:  # a broken or changed host must never break the interpreter
        _warn(f"templates not registered ({exc!r})")


class _RegisteringLoader:
    """Delegates to the real loader and registers once the target module has executed."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader  # keep inspect/linecache working on the host module
        self._loader.exec_module(module)
        _register_safely()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class RegisterOnImport:
    """A one-shot meta-path finder for `TARGET_MODULE`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET_MODULE:
            return None
        uninstall()
        try:
            for finder in sys.meta_path:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(fullname, path, target) if find_spec else None
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _RegisteringLoader(spec.loader)
            return spec
        except Exception as exc:
            _warn(f"import hook failed ({exc!r})")
            return None


def is_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def install() -> None:
    """Put the finder first on `sys.meta_path`, or register now if the host is already imported."""
    if is_disabled():
        return
    if TARGET_MODULE in sys.modules:
        _register_safely()
        return
    if not any(isinstance(finder, RegisterOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, RegisterOnImport())


def uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, RegisterOnImport)]
