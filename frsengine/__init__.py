"""frsengine: blind face restoration with neural architecture search (FRSNet / MFPSNet)."""
__version__ = "0.1.0"

from frsengine.errors import FrsError  # noqa: E402  (light: no torch import)

__all__ = ["FrsError", "__version__", "load", "restore"]


def __getattr__(name):
    # `load` and `restore` import torch: only on first use, so `import frsengine` stays light.
    if name == "load":
        from frsengine.export.package import load_package

        return load_package
    if name == "restore":
        from frsengine.api import restore

        return restore
    raise AttributeError(f"module 'frsengine' has no attribute {name!r}")
