"""User-facing errors: one line that says what is wrong and how to fix it."""


class FrsError(Exception):
    """Base class of errors the CLI prints as one line (no traceback)."""


class ImageReadError(FrsError):
    """An input image could not be used."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingDependencyError(FrsError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, feature: str, pip_name: str | None = None):
        self.package = package
        super().__init__(
            f"{feature} needs the optional package '{package}', which is not installed: "
            f"run `.venv/bin/pip install {pip_name or package}` (or ./install.sh)"
        )
