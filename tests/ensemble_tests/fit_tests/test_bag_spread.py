"""Calibration for what a k-fold bag ships: its mean margin, narrower than one fold model's."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import log_loss

from ensemble.fit.bag_spread import variance_ratio
from ensemble import EnsembleError, EnsemblePipeline, EnsembleSettings


def _fold_margins(rng: np.random.Generator, n: int, k: int, noise_share: float) -> tuple[np.ndarray, np.ndarray]:
    """k fold models' margins on n new images, m = f + e, e a noise_share of m's variance; labels from f."""
    signal = rng.normal(0.5, 2.0, n)
    noise_sd = 2.0 * np.sqrt(noise_share / (1 - noise_share))
    y = (rng.random(n) < expit(signal)).astype(int)
    return signal[:, None] + rng.normal(0, noise_sd, (n, k)), y


def test_variance_ratio_is_one_for_one_fold_and_falls_with_more() -> None:
    assert variance_ratio(1, 0.3) == 1.0 and variance_ratio(5, 0.0) == 1.0
    assert variance_ratio(3, 0.3) == pytest.approx(0.8) and variance_ratio(5, 0.3) < variance_ratio(3, 0.3)


def test_a_calibrator_fitted_for_the_bag_mean_fits_the_bag_mean_better() -> None:
    rng = np.random.default_rng(0)
    k, r = 5, 0.3
    oof, y_oof = _fold_margins(rng, 4000, k, r)
    oof = oof[:, :1]  # out of fold: each image scored by one fold model
    shipped, y_new = _fold_margins(rng, 4000, k, r)
    shipped = shipped.mean(axis=1, keepdims=True)  # what the bag ships on new images
    c = variance_ratio(k, r)
    rescaled = oof.mean() + c * (oof - oof.mean())
    as_is = EnsemblePipeline(method="mean", calibration="platt").fit(oof, y_oof)
    for_bag = EnsemblePipeline(method="mean", calibration="platt").fit(rescaled, y_oof)
    loss_as_is = log_loss(y_new, as_is.predict_proba(shipped))
    loss_for_bag = log_loss(y_new, for_bag.predict_proba(shipped))
    assert loss_for_bag < loss_as_is - 0.002
    # fitted on single-fold margins, the bag reads under-confident: its calibration slope exceeds 1
    mean_p_as_is = np.abs(as_is.predict_proba(shipped) - 0.5).mean()
    assert np.abs(for_bag.predict_proba(shipped) - 0.5).mean() > mean_p_as_is


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_noise_share_outside_zero_to_one_is_refused_where_it_enters(share: float) -> None:
    with pytest.raises(EnsembleError, match=rf"fold noise share {share} must be in \[0, 1\)"):
        EnsembleSettings(fold_noise_share=share)
