"""Engine tests: CPU, one intra-op thread, seeded. They need only the engine (torch, numpy, torchprofile)
plus pytest and hypothesis; ``pytest engine/tests`` runs them on their own."""

import pytest
import torch

# One intra-op thread: tests assert correctness, and on a loaded 2-core machine OpenMP threads stall small ops
# (test_native_backend.py checks results across thread counts explicitly).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
