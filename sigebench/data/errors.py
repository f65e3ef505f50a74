"""Exceptions raised by the data layer.

Every error derives from :class:`DataError`, so callers (and the CLI) can catch one type and print a
single clear line instead of a traceback.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DataError", "DownloadError", "ManifestError"]


class DataError(RuntimeError):
    """Base class of every error raised by :mod:`sigebench.data`."""


class ManifestError(DataError):
    """A dataset manifest is missing, unreadable or does not follow the schema."""


class DownloadError(DataError):
    """A file could not be fetched (network failure, missing on the server or mirror, bad archive)."""


class ChecksumError(DataError):
    """A fetched file does not match its declared checksum, even after one re-fetch."""
