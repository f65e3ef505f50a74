import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny (or their MAC counts need no speed): one thread avoids OpenMP barrier stalls
    that make small ops 100x slower when the machine's cores are shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
