"""Errors a user can act on. Each names the culprit and says what to do."""
from __future__ import annotations

__all__ = [
    "LungsweepError",
    "ConfigError",
    "DataError",
    "BadImageError",
    "SplitError",
    "WeightsError",
    "CheckpointError",
    "MetricsError",
]


class LungsweepError(Exception):
    """Base of every error the command line reports as one clear line."""


class ConfigError(LungsweepError, ValueError):
    """A config key or value is not allowed."""


class DataError(LungsweepError, ValueError):
    """The dataset folder or manifest cannot be used as given."""


class BadImageError(DataError):
    """An image file cannot be decoded (unreadable, truncated, not an image)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"cannot decode image {path}: {reason}. Remove or replace the file, "
            "or set skip_bad: true to leave bad images out (they are listed in the run folder)."
        )


class SplitError(DataError):
    """A stratified group split is impossible for the data at hand."""


class WeightsError(LungsweepError):
    """Pretrained weights were not found or do not fit the model."""


class CheckpointError(LungsweepError):
    """A checkpoint or run folder is missing, truncated or inconsistent."""


class MetricsError(LungsweepError, ValueError):
    """Labels or probabilities handed to a metric are not binary labels and probabilities."""
