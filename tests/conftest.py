"""Suite tests (harness, data layer, models). The example edits come through the data mirror named by
SIGE_DATA_MIRROR, the variable CI and the Makefile set (to ../shared/data); without it they are fetched from
their public URLs."""

import os
import tempfile

import pytest
import torch

# Fetched files land in a throw-away data root unless the caller chose one.
if "SIGE_DATA" not in os.environ:
    os.environ["SIGE_DATA"] = tempfile.mkdtemp(prefix="sige-test-data-")

# One intra-op thread: tests assert correctness, and on a loaded 2-core machine OpenMP threads stall small ops.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
