"""frsengine: blind face restoration with neural architecture search (FRSNet / MFPSNet)."""
__version__ = "0.1.0"

from frsengine.errors import FrsError  # noqa: E402  (light: no torch import)

__all__ = ["FrsError", "__version__"]
