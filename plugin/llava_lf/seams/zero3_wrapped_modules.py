"""ZeRO-3 and a module that hands unknown attributes to another: PEFT's `modules_to_save` wrapper around the projector
(`additional_target: multi_modal_projector`) answers for its copy of the projector. DeepSpeed's ZeRO-3 registers a
module's children first, then gives the module its own backward-hook classes unless `hasattr(module, "pre_bwd_fn")`
/ `"post_bwd_fn"` already holds, so the wrapper gets the copy's classes, bound to the copy. Once the projector's input
needs a gradient (gradient checkpointing on, the host's default), the wrapper's forward-pre hook runs the copy's
class before the copy ever ran: `AttributeError: ... no attribute 'ds_grads_remaining'` at the first step.

DeepSpeed fixed it by asking the module's own `__dict__` (deepspeedai/DeepSpeed#8144, in 0.19.3). On a DeepSpeed
without it, `install` gives ZeRO-3's module a `hasattr` that answers the hook state (`OWN_STATE`) from a delegating
module's own `__dict__`, as the fix does; every other question, and every module without its own `__getattr__`, gets
Python's. It runs only in ZeRO-3's hooks, so DDP, ZeRO-2 and FSDP runs never reach it.
Which DeepSpeed needs it is found by trying (`gives_own_hooks`), never by version: on a fixed one nothing is changed.
"""

from __future__ import annotations

import builtins
import functools
from types import ModuleType, SimpleNamespace

from . import Seam, calls_by_name, has_parameters

MODULE, CLASS, METHOD = "deepspeed.runtime.zero.parameter_offload", "DeepSpeedZeRoOffload", "_register_deepspeed_module"
# The per-module hook state DeepSpeed keeps on the module itself; a wrapper's must be its own, never its child's.
OWN_STATE = frozenset({"pre_bwd_fn", "post_bwd_fn", "applied_pre_backward_ref_cnt"})
_MARK = "__llava_lf_own_state__"


def _delegates(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Module) and type(module).__getattr__ is not torch.nn.Module.__getattr__


def _hasattr(obj, name: str) -> bool:
    if name in OWN_STATE and _delegates(obj):
        return name in obj.__dict__
    return builtins.hasattr(obj, name)


setattr(_hasattr, _MARK, True)


def _wrapper():
    """A throwaway module that answers unknown attributes from its child, as PEFT's wrappers do."""
    import torch

    class Delegating(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(1, 1)

        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._modules["inner"], name)

    return Delegating()


def gives_own_hooks(offload: ModuleType) -> bool:
    """Does this ZeRO-3 give a delegating module backward-hook classes of its own? Registers a throwaway wrapper
    (hooks removed after, its own id counter) the way ZeRO-3 registers a model's modules."""
    register = getattr(getattr(offload, CLASS), METHOD)
    wrapper, holder = _wrapper(), SimpleNamespace(forward_hooks=[], backward_hooks=[])
    setattr(holder, METHOD, functools.partial(register, holder))  # it registers the children through self
    register(holder, wrapper, count=[0])
    for hook in holder.forward_hooks + holder.backward_hooks:
        hook.remove()
    return all(name in wrapper.__dict__ for name in ("pre_bwd_fn", "post_bwd_fn"))


def _checks() -> list[str]:
    import importlib

    offload = importlib.import_module(MODULE)
    if gives_own_hooks(offload):  # a fixed DeepSpeed, or ours installed: nothing to rely on
        return []
    register = getattr(getattr(offload, CLASS), METHOD)
    return has_parameters(register, ["self", "module", "count"]) + calls_by_name(register, "hasattr")


SEAM = Seam(feature="ZeRO-3 training of a wrapped module (additional_target: the projector's modules_to_save copy)",
            symbol=f"{MODULE}.{CLASS}.{METHOD}", module=MODULE, checks=_checks,
            ours="seams/zero3_wrapped_modules.py: install (the module's hasattr for its own hook state)")


def install(offload: ModuleType) -> bool:
    """Give ZeRO-3's `offload` module (deepspeed.runtime.zero.parameter_offload, once imported) our `hasattr` when
    it needs it and takes it; return whether it is installed. Says once, and leaves DeepSpeed as it was, when the
    shape differs."""
    if getattr(offload.__dict__.get("hasattr"), _MARK, False):
        return True
    try:
        if gives_own_hooks(offload):
            return False  # DeepSpeed does it itself
    except Exception:  # the shape changed: the checks below say how
        pass
    misfits = SEAM.check_and_say()
    if misfits:
        return False
    offload.hasattr = _hasattr
    if not gives_own_hooks(offload):  # ours did not reach the check: undo, and say so
        del offload.hasattr
        SEAM.say_once([f"{CLASS}.{METHOD} still hands a wrapper its child's hooks with llava_lf's hasattr"])
        return False
    return True


def installed(offload: ModuleType) -> bool:
    return getattr(offload.__dict__.get("hasattr"), _MARK, False)
