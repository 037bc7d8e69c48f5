"""The errors of the ensemble package, one root: what is wrong with the input or the settings, and what to do.

    EnsembleError    member predictions, labels, groups, settings or an ensemble folder cannot be used as given
    ExplainError     what `lungsweep explain` cannot explain as given (an EnsembleError)
    ArtifactError    an exported MODEL_DIR is missing, incomplete, altered or not ours (a LungsweepError beside
                     EnsembleError, not under it: `except EnsembleError` never swallows a damaged export)
"""
from __future__ import annotations

from trainers.errors import LungsweepError

__all__ = ["ArtifactError", "EnsembleError", "ExplainError"]


class EnsembleError(LungsweepError, ValueError):
    """Member predictions, labels, groups or ensemble settings cannot be used as given."""


class ExplainError(EnsembleError):
    """What `lungsweep explain` cannot explain as given (a source without torch weights, no images), and why."""


class ArtifactError(LungsweepError, ValueError):
    """MODEL_DIR is missing, incomplete, altered or not ours."""
