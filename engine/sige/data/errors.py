"""Exceptions raised by the data layer.

Every error derives from :class:`DataError`, so callers (and the CLI) can catch one type and print a
single clear line instead of a traceback.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DataError", "DownloadError", "ManifestError", "MissingAssetsError"]


class DataError(RuntimeError):
    """Base class of every error raised by :mod:`sige.data`."""


class ManifestError(DataError):
    """A dataset manifest is missing, unreadable or does not follow the schema."""


class DownloadError(DataError):
    """A file could not be fetched (network failure, missing on the server or mirror, bad archive)."""


class ChecksumError(DataError):
    """A fetched file does not match its declared checksum, even after one re-fetch."""


class MissingAssetsError(DataError):
    """Weights or datasets a task needs are absent; ``missing`` lists (what, where to put it / how to get it)."""

    def __init__(self, missing: list[tuple[str, str]], task: str = ""):
        self.missing = list(missing)
        self.task = task
        lines = [f"{task + ': ' if task else ''}missing {len(self.missing)} file(s); download them first:"]
        lines += [f"  - {what}: {where}" for what, where in self.missing]
        super().__init__("\n".join(lines))
