"""The one error the ensemble step raises: what is wrong with the holdout or the settings, and what to do."""
from __future__ import annotations

from trainers.errors import LungsweepError

__all__ = ["EnsembleError"]


class EnsembleError(LungsweepError, ValueError):
    """Member predictions, labels, groups or ensemble settings cannot be used as given."""
