import pytest
import torch

from tests.train.helpers import make_faces


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces") / "train", 12)
