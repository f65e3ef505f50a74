import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests use the example edits through the data mirror (CI sets SIGE_DATA_MIRROR=../shared/data).
if "SIGE_DATA_MIRROR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SIGE_DATA_MIRROR"] = str(SHARED_DATA)

# Fetched files land in a throw-away data root unless the caller chose one.
if "SIGE_DATA" not in os.environ:
    os.environ["SIGE_DATA"] = tempfile.mkdtemp(prefix="sige-test-data-")

# One intra-op thread: tests assert correctness, and on a loaded 2-core machine OpenMP threads stall small ops.
# (tests/engine/test_native_backend.py checks results across thread counts explicitly.)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
