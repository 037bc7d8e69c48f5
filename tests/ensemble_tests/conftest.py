"""Shared fixtures of the ensemble tests.

* Synthetic member predictions with known truth: margins of members of chosen
  quality on grouped samples.
* A tiny real sweep (sweep_dir), its ensemble folder (ens_dir) and that
  ensemble exported (model_dir), built once per session and shared by
  test_graph.py, test_export.py, test_artifact.py and test_predict.py. The
  members are trained by trainers.train (real torch) and listed in a results
  table as a sweep would list them, so build_ensemble and export_model read
  exactly what they read after `lungsweep launch` (the Ray path is covered by
  test_end_to_end.py). Tests must not change these folders: copy them first.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests_support import make_dataset, tiny_config

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


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's image cache for the session-scoped folders, which are built before isolated_cache runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGSWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "image-cache"))
        yield


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory, session_cache: None) -> Path:
    """A sweep folder with three trained trials: 32 px (two seeds) and 40 px."""
    from trainers import train

    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "train", groups_per_class=12, per_group=2, seed=4)
    sweep = root / "sweep"
    rows = []
    for rank, (trial, size, seed) in enumerate([("a32", 32, 0), ("b40", 40, 1), ("c32", 32, 2)], start=1):
        cfg = tiny_config(data, image_size=size, seed=seed, epochs=4, num_threads=1, holdout_fraction=0.3)
        result = train(cfg, sweep / f"trial_{trial}")
        rows.append({"rank": rank, "trial_id": trial, "status": "completed",
                     "best_metric": result.best_metrics["val_auc"], "checkpoint": str(sweep / f"trial_{trial}" / "best")})
    pd.DataFrame(rows).to_parquet(sweep / "results.parquet")
    return sweep


@pytest.fixture(scope="session")
def ens_dir(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory, session_cache: None) -> Path:
    """sweep_dir's three trials as a mean, temperature-calibrated ensemble with mirror TTA."""
    from ensemble import EnsembleSettings, build_ensemble

    out = tmp_path_factory.mktemp("ens") / "ens"
    build_ensemble(sweep_dir, out, EnsembleSettings(method="mean", calibration="temperature", members=3,
                                                     tta=True, n_splits=3, n_boot=50))
    return out


@pytest.fixture(scope="session")
def model_dir(ens_dir: Path, tmp_path_factory: pytest.TempPathFactory, session_cache: None) -> Path:
    """ens_dir exported as ONNX."""
    from ensemble import export_model

    out = tmp_path_factory.mktemp("model") / "model"
    export_model(ens_dir, out)
    return out
