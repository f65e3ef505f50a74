import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models here run fastest on one thread (no pool synchronisation per small op); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
