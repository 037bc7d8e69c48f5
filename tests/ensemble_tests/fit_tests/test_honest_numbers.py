"""Honest numbers on a real small run: intervals that contain their estimates or say why there is none,
calibration slope and intercept, an operating point that says what to expect, and the groups' own rule."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tests_support import make_dataset, tiny_config

from ensemble import (
    METRIC_NAMES, audit_block, bootstrap_metrics, format_metrics, grouping_statement, read_metrics, report_path,
)
from trainers.audit import AUDIT_FILE
from trainers.audit.report import audit_config


def _intervals(block: Any, where: str = "") -> Iterator[tuple[str, dict, dict]]:
    """(path, entry, the block's "interval") for every {"value", "ci_low", "ci_high"} anywhere in metrics.json."""
    if not isinstance(block, dict):
        return
    for key, value in block.items():
        if isinstance(value, dict) and {"value", "ci_low", "ci_high"} <= set(value):
            yield f"{where}/{key}", value, block.get("interval", {})
        else:
            yield from _intervals(value, f"{where}/{key}")


def test_every_interval_of_a_real_run_contains_its_estimate(ens_dir: Path) -> None:
    metrics = read_metrics(ens_dir)
    for name in ("calibration_slope", "calibration_intercept"):
        assert set(metrics[name]) == {"value", "ci_low", "ci_high"}, name
        assert set(metrics["uncalibrated"][name]) == {"value", "ci_low", "ci_high"}, name
    found = list(_intervals(metrics))
    blocks = 2 + len(metrics["members"])  # the ensemble, before calibration, each member
    assert len(found) == blocks * len(METRIC_NAMES)
    for path, entry, interval in found:
        if entry["ci_low"] is None:  # no interval: the block says why
            assert entry["ci_high"] is None and interval["missing"][path.rsplit("/", 1)[1]], path
        else:
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (path, entry)
            assert entry["ci_low"] < entry["ci_high"], (path, entry)  # never zero-width
    # a tiny holdout: few groups per class, so images are resampled, and metrics.json says so
    interval = metrics["interval"]
    assert interval["unit"] in ("group", "image") and interval["why"] and interval["method"] == "BCa bootstrap"
    assert f"{interval['resamples']} resamples" in interval["statement"]
    assert metrics["calibration_measures"]["ece_bins"] >= 2
    assert "equal-mass" in metrics["calibration_measures"]["ece_bin_rule"]
    point = metrics["operating_point"]
    assert 0 <= point["sensitivity_lower_bound"] <= point["sensitivity"] <= 1 and "at least" in point["statement"]

    page = report_path(ens_dir).read_text(encoding="utf-8")
    assert 'id="interval-rule"' in page and 'id="operating-point"' in page
    assert "equal-mass bins" in page and "Calibration slope and intercept" in page
    assert "calibration_slope" in page and "calibration_intercept" in page


def test_format_metrics_prints_why_there_is_no_interval() -> None:
    y = np.r_[np.ones(30, dtype=int), np.zeros(30, dtype=int)]
    p = np.r_[np.linspace(0.6, 0.95, 30), np.linspace(0.05, 0.7, 30)]
    groups = np.where(y == 1, "covid", "normal")  # the two groups
    shown = format_metrics(bootstrap_metrics(y, p, groups, 0.5, n_boot=200))
    assert "sensitivity" in shown and "no interval: 100% of resamples give exactly 1" in shown
    assert "resamples of images within each class, because the negative class has only 1 group" in shown
    assert "[1.0000, 1.0000]" not in shown and "calibration_slope" in shown
    assert "equal-mass bins" in shown


def test_grouping_statement_reads_the_datasets_own_rule(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", groups_per_class=4, per_group=2, seed=0)
    cfg = tiny_config(data)
    report = audit_config(cfg)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / AUDIT_FILE).write_text(json.dumps(report))
    rule = report["groups"]["rule"]
    block = audit_block(sweep, {"group_regex": None})
    assert block["groups"].startswith(f"Groups: {rule['description']} (rule {rule['rule']!r}")
    assert rule["reason"] in block["groups"] and block["group_rule"] == rule["rule"]
    # without the record (an older audit.json, or none): the sentence read from the config
    assert grouping_statement({"group_regex": r"(\w+)-"}).startswith("Groups: the first group of the regex")
    assert "near-duplicate images" in audit_block(tmp_path, {})["groups"]


def test_evaluate_on_a_folder_named_by_class_and_number_is_honest(model_dir: Path, tmp_path: Path, caplog) -> None:
    """`covid_0.png ... covid_29.png` / `noncovid_N.png`: the default reading would make one group per class; the
    files become one group each (with a warning), and every metric gets an interval of width above zero or says
    why it has none."""
    import logging
    import shutil

    from ensemble import evaluate

    source = make_dataset(tmp_path / "source", groups_per_class=15, per_group=2, seed=9)
    folder = tmp_path / "test"
    for cls, stem in (("CT_COVID", "covid"), ("CT_NonCOVID", "noncovid")):
        (folder / cls).mkdir(parents=True)
        for i, path in enumerate(sorted((source / cls).iterdir())):
            shutil.copy(path, folder / cls / f"{stem}_{i}{path.suffix}")
    with caplog.at_level(logging.WARNING):
        metrics = evaluate(model_dir, folder, n_boot=200)
    assert any("file names read as 'stem'" in r.getMessage() for r in caplog.records), "the rule is said loudly"
    assert "60 images" in metrics["data"] and "(60 groups:" in metrics["data"], metrics["data"]
    assert metrics["interval"]["unit"] == "group"  # 30 one-image groups per class: enough to resample groups
    text = format_metrics(metrics)
    for name in METRIC_NAMES:
        entry = metrics[name]
        if entry["ci_low"] is None:
            assert metrics["interval"]["missing"][name] and "no interval: " in text, name
        else:
            assert entry["ci_low"] < entry["ci_high"], (name, entry)
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (name, entry)
