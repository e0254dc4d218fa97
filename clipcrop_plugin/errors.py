"""The typed errors clipcrop raises. Each carries a one-line reason meant for users."""

from __future__ import annotations


class ClipcropError(Exception):
    """Base class: ``str(err)`` is a single line a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return str(self)


class ImageError(ClipcropError):
    """A photo could not be opened or decoded (empty, truncated, not an image, ...)."""

    def __init__(self, reason: str, path: object | None = None) -> None:
        super().__init__(reason)
        self.path = path


class ConfigError(ClipcropError):
    """Bad configuration or bad command-line values."""


class WeightsError(ClipcropError):
    """Model weights are missing, corrupt, or do not match the configured model."""


class StoreError(ClipcropError):
    """The crop database cannot be opened, migrated, or written."""


class MetadataError(ClipcropError):
    """XMP metadata could not be read or written for one photo."""
