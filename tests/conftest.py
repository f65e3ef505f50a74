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

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
