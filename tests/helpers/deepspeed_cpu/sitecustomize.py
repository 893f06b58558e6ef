"""Test-only backport of deepspeedai/DeepSpeed#8539 (why: tests/test_training_deepspeed.py's docstring).

Put first on the PYTHONPATH of that test's DeepSpeed training processes only: ZeRO-3's blocking multi-parameter
all-gather waits for every one of its async all-gathers, not only the last (gloo runs them on several threads, in
any order). Installed when deepspeed.runtime.zero.partition_parameters is imported; a fixed deepspeed is left alone.
"""

import importlib.abc
import importlib.util
import inspect
import sys

TARGET = "deepspeed.runtime.zero.partition_parameters"


def _install(module):
    original = module.Init._allgather_params_coalesced
    if "launch_handles[-1].wait()" not in inspect.getsource(original):
        return  # fixed in this deepspeed
    comm = module.dist

    class EachWaited:
        def __getattr__(self, name):
            return getattr(comm, name)

        def all_gather_into_tensor(self, *args, **kwargs):
            handle = comm.all_gather_into_tensor(*args, **kwargs)
            handle.wait()
            return handle

        def all_gather(self, *args, **kwargs):
            handle = comm.all_gather(*args, **kwargs)
            handle.wait()
            return handle

    def _allgather_params_coalesced(self, *args, **kwargs):
        module.dist = EachWaited()
        try:
            return original(self, *args, **kwargs)
        finally:
            module.dist = comm

    module.Init._allgather_params_coalesced = _allgather_params_coalesced
    print("llava-lf tests: DeepSpeed#8539 backport installed (ZeRO-3 waits for each all-gather)", file=sys.stderr)


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _install(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterImport())
