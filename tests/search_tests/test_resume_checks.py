"""Resuming a sweep with another seed or startup_trials is refused; another num_samples is noted."""
from __future__ import annotations

import dataclasses

import pytest
from tests_support import sweep_yaml

from search import load_sweep_config
from search.record import check_same_sweep, write_sweep
from trainers import ConfigError, LungsweepError


@pytest.fixture
def launched(tmp_path, synthetic_data):
    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data, seed=3, startup_trials=2))
    write_sweep(tmp_path / "sweep", cfg, "0123456789abcdef0123456789abcdef")
    return cfg, tmp_path / "sweep"


@pytest.mark.parametrize("change, message", [
    ({"seed": 4}, r"launched with seed 3, this launch asks for 4; resume with seed: 3"),
    ({"startup_trials": 5}, r"launched with startup_trials 2, this launch asks for 5; resume with startup_trials: 2"),
    ({"metric": "val_auc", "mode": "max"}, r"holds a sweep with another 'metric'"),
])
def test_a_resume_that_changes_the_search_is_refused(launched, change, message):
    cfg, run_dir = launched
    with pytest.raises(LungsweepError, match=message) as raised:
        check_same_sweep(dataclasses.replace(cfg, **change), run_dir)
    if "seed" in change or "startup_trials" in change:
        assert isinstance(raised.value, ConfigError)


def test_another_num_samples_is_accepted_with_a_note(launched, capsys):
    cfg, run_dir = launched
    check_same_sweep(dataclasses.replace(cfg, num_samples=cfg.num_samples + 4), run_dir)
    out = capsys.readouterr().out
    assert f"was launched with num_samples {cfg.num_samples}; the resumed sweep keeps that budget" in out
    check_same_sweep(cfg, run_dir)  # the same config: silent
    assert capsys.readouterr().out == ""
