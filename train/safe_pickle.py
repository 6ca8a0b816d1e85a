"""A restricted unpickler for checkpoints that pickle more than tensors.

Official GRM checkpoints also pickle the trainer's ``settings`` and ``stats`` objects, so
``torch.load(weights_only=True)`` refuses them. This module is passed to ``torch.load`` as
``pickle_module``: globals outside a small allow-list become inert stubs (their state is dropped), and
globals from modules that can run code (os, subprocess, builtins' eval/exec, ...) are refused outright.
"""

from __future__ import annotations

import pickle
from typing import Any

from grm.runtime.errors import CheckpointError

# (module, name) pairs that are safe to construct while unpickling a checkpoint.
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "dtype"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
}
_DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pty",
    "builtins",
    "__builtin__",
    "code",
    "codeop",
    "ctypes",
    "pickle",
    "marshal",
    "types",
    "io",
    "webbrowser",
    "multiprocessing",
    "signal",
    "tempfile",
    "pathlib",
    "functools",
    "operator",
)


class InertStub:
    """Stands in for an unknown pickled class: accepts any construction and state, does nothing."""

    qualname = "unknown"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> InertStub:
        return self


def _stub_for(module: str, name: str) -> type:
    return type(f"Stub_{name}", (InertStub,), {"qualname": f"{module}.{name}"})


class Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or module.startswith("torch.") and name.startswith("_rebuild"):
            return super().find_class(module, name)
        root = module.split(".")[0]
        if root in _DANGEROUS_MODULES:
            raise CheckpointError(
                f"checkpoint references {module}.{name}, which can run code when loaded; refusing to load it "
                "(it may be malicious). Re-save the weights as a plain state dict."
            )
        return _stub_for(module, name)


def load(file: Any, **kwargs: Any) -> Any:
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    import io

    return Unpickler(io.BytesIO(data), **kwargs).load()


# torch.load reads these attributes from its pickle_module.
Pickler = pickle.Pickler
dump = pickle.dump
dumps = pickle.dumps
UnpicklingError = pickle.UnpicklingError
