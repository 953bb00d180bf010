"""Where a metric's user-supplied weights file is: an explicit path, else an environment variable."""
from __future__ import annotations

import os
from pathlib import Path

from frsengine.errors import FrsError


def user_weights(path: str | os.PathLike | None, env_var: str, what: str, missing: str,
                 absent_hint: str = "check the path") -> Path:
    """``path``, else ``$env_var``. ``what``: the metric's name; ``missing``: the one-line message
    when neither is set; ``absent_hint``: what to do when the named file does not exist."""
    source = "weights=" if path else f"${env_var}"
    path = path or os.environ.get(env_var)
    if not path:
        raise FrsError(missing)
    if not Path(path).is_file():
        raise FrsError(f"{what} weights file '{path}' (from {source}) does not exist: {absent_hint}")
    return Path(path)
