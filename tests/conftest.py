"""Shared fixtures: generated image folders and an isolated image cache."""
from __future__ import annotations

from pathlib import Path

import os

import pytest
from tests_support import kill_children, make_dataset

# Every Ray a test starts without an address is a new local one of its own: never a cluster named by
# the user's RAY_ADDRESS or one `ray start` made here, since scripts/test.sh runs two test processes at once.
os.environ["RAY_ADDRESS"] = "local"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "train")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One decoded-image cache per test session, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "image-cache"
    monkeypatch.setenv("LUNGSWEEP_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """A real local Ray for one test module, on loopback; its processes are killed by id at the end."""
    import ray  # here, not at the top: the CUDA tests run on GPU machines that have no Ray

    cache = tmp_path_factory.getbasetemp() / "image-cache"  # the same cache the trainers tests use
    os.environ["LUNGSWEEP_CACHE"] = str(cache)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",  # loopback only
        runtime_env={"env_vars": {"LUNGSWEEP_CACHE": str(cache)}},
    )
    yield
    ray.shutdown()
    kill_children()
