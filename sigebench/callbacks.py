"""Hydra callbacks of the suite."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ExportResults(Callback):
    """After a sweep, rewrite the derived CSV from every shard: parallel jobs each export after writing their own
    shard, and the last export of a racing job may predate another job's shard."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from sigebench.results import ResultsStore

        if config.get("task", {}).get("name") == "efficiency":
            ResultsStore(config.output).export_csv()
