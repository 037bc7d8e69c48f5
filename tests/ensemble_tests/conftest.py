"""Synthetic member predictions with known truth: margins of members of chosen quality on grouped samples."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

MemberData = tuple[np.ndarray, np.ndarray, np.ndarray]


def _make_members(
    *,
    n_groups: int = 60,
    per_group: int = 3,
    signal: tuple[float, ...] = (2.0, 2.0, 0.0, 0.0, 0.0),
    noise: float = 1.0,
    seed: int = 0,
) -> MemberData:
    """X (margins, n_groups * per_group x len(signal)), y, groups.

    Each group (patient) has one label. Member j's margin is signal[j] * (2y - 1)
    plus a patient effect shared by all members plus its own noise: signal 0 is a
    pure-noise member.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    y_group = rng.permutation(np.arange(n_groups) % 2)  # balanced classes
    y = y_group[groups]
    patient = rng.normal(0.0, 0.5, n_groups)[groups]
    sign = (2 * y - 1)[:, None]
    X = sign * np.asarray(signal)[None, :] + patient[:, None] + rng.normal(0.0, noise, (len(y), len(signal)))
    return X, y, groups


@pytest.fixture
def make_members() -> Callable[..., MemberData]:
    return _make_members


@pytest.fixture
def members() -> MemberData:
    """Two informative members (0, 1) and three pure-noise members (2, 3, 4)."""
    return _make_members()
