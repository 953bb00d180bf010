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


@pytest.fixture
def single_thread():
    """Tiny-shape checks (gradcheck, opcheck) run on one thread: they gain nothing from threads and
    OpenMP barriers stall badly when the CI's cores are shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
