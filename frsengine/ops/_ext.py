"""Loading the native extension ``frsengine._C`` (C++ CPU kernels, CUDA kernels when built with CUDA).

The extension is optional: when it is missing, fails to load (e.g. built against another torch) or
carries a stamp that does not match this package (stale build), one warning is issued and the
dispatcher uses the other implementations. Loading is lazy (first fused-op call), so importing
frsengine never touches native code.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch

# Bump together with FRSENGINE_EXT_API in csrc/frsengine_ops.h whenever a native op's schema or
# semantics change: an extension built from older sources is then reported stale, never called.
EXT_API_VERSION = 4

_state: dict[str, object] = {}


def expected_stamp() -> str:
    """The stamp setup.py/CMake bake into the extension: API version + the torch it was built for."""
    return f"api{EXT_API_VERSION}-torch{torch.__version__}"


def _load() -> tuple[ModuleType | None, str | None]:
    hint = "rebuild it with `pip install --no-build-isolation --no-deps -e .`"
    try:
        mod = importlib.import_module("frsengine._C")
    except ImportError as exc:  # absent (pure-Python install) or unloadable (ABI/undefined symbol)
        return None, f"frsengine._C could not be imported ({exc}); {hint}"
    except OSError as exc:
        return None, f"frsengine._C could not be loaded ({exc}); {hint}"
    stamp = getattr(mod, "BUILD_STAMP", None)
    if stamp != expected_stamp():
        return None, f"frsengine._C is stale (built as {stamp!r}, this package needs {expected_stamp()!r}); {hint}"
    return mod, None


def extension() -> ModuleType | None:
    """The loaded, up-to-date extension module, or None (after one warning)."""
    if "module" not in _state:
        mod, problem = _load()
        _state["module"], _state["problem"] = mod, problem
        if problem is not None:
            warnings.warn(f"{problem}; falling back to the other kernel implementations "
                          "(the plain PyTorch reference on CPU)", RuntimeWarning, stacklevel=2)
    return _state["module"]  # type: ignore[return-value]


def problem() -> str | None:
    """Why the extension is unusable, or None when it is loaded."""
    extension()
    return _state["problem"]  # type: ignore[return-value]


def has_cuda() -> bool:
    """Whether the loaded extension was compiled with its CUDA sources."""
    mod = extension()
    return bool(mod is not None and getattr(mod, "WITH_CUDA", False))
