import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # Shapes here are tiny: one thread is faster than two and does not spin against other jobs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
