"""Ray for the sweep tests: real local Ray processes, stopped by process id at the end."""
from __future__ import annotations

import os

import pytest
import ray
from tests_support import kill_children


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
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
