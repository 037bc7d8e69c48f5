"""Shared fixtures: generated image folders and an isolated image cache."""
from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import make_dataset


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "train")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One decoded-image cache per test session, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "image-cache"
    monkeypatch.setenv("LUNGSWEEP_CACHE", str(cache))
    return cache
