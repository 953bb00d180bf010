import pytest
import torch
from opcases import backend_or_skip

from frsengine.ops import dispatch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def use_backend(monkeypatch):
    """use_backend("cpp"): force that implementation for the test, or skip with the reason."""
    def _use(backend: str):
        backend_or_skip(backend)
        monkeypatch.setenv(dispatch.ENV_VAR, backend)
    return _use
