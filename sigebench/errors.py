"""The errors that mean "a setting or a file is wrong" (printed as one line by the command-line tools), as
opposed to bugs (which keep their traceback)."""

from __future__ import annotations

from sigebench.config import ConfigError
from sigebench.data import DataError
from sigebench.edits import EditError
from sigebench.metrics.weights import MissingWeightsError
from sigebench.results import ResultsError
from sigebench.weights import MissingCheckpointError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, EditError, MissingWeightsError, MissingCheckpointError, ResultsError,
)  # fmt: skip
