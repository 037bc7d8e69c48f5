"""EnsembleSettings: how `lungsweep ensemble` (and `lungsweep run`) fits an ensemble, and every default it has.

The command line, `lungsweep run` and `pick_members` take their defaults from here, so each is said once.
A module of its own, free of torch, so that building the command line or naming a job imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EnsembleError

__all__ = ["BAG_MODELS", "EnsembleSettings", "THRESHOLD_RULES"]

# what a k-fold bag ships (ensemble.fit.members.Member.as_shipped), and how --help says it
BAG_MODELS = {
    "all": "every fold model, their mean margin",
    "first": "its first fold model alone (one network per config)",
}

# how a threshold may be chosen (ensemble.fit.threshold), and how the report names each rule
THRESHOLD_RULES = {
    "youden": "Youden's J",
    "smoothed_youden": "Youden's J on smoothed score distributions",
    "prevalence": "the positive share of the fitting data (Youden's J for calibrated probabilities)",
    "half": "probability 0.5",
}


@dataclass(frozen=True)
class EnsembleSettings:
    # every bag the sweep trained, averaged: on three outer splits (bench_members) +0.016 holdout AUC over greedy
    # weights on the top 5 finished bags, ahead on each split; greedy cannot weigh a bag ASHA stopped early
    method: str = "mean"  # one of ensemble.fit.combine.COMBINERS
    calibration: str = "temperature"  # one of ensemble.fit.pipeline.CALIBRATIONS
    members: int | str = "all"  # "all" (ensemble.fit.members.ALL), or the top N usable trials; ignored with `trials`
    trials: tuple[str, ...] = ()
    # the networks the exported model may hold (every member's fold models); None: no budget (ensemble.fit.budget)
    max_networks: int | None = None
    # what each bag ships: "first", its first fold model (one network per config: on outer splits 0-2 (bench_budget)
    # as high a holdout AUC and as low a log-loss as every fold model's mean, at 12 networks instead of 28-36), or "all"
    bag_models: str = "first"
    tta: bool = False
    fold_noise_share: float = 0.0  # ensemble.fit.bag_spread; 0: bench_calibration found no gain from 0.13 or 0.26
    target_sensitivity: float | None = None  # where set, it decides the threshold instead of threshold_rule
    # ensemble.fit.threshold.THRESHOLD_RULES; smoothed Youden: on outer splits 0-2 (bench_threshold) the highest
    # cross-fitted balanced accuracy of the rules, over 465 pool images a split
    threshold_rule: str = "smoothed_youden"
    n_splits: int = 5
    n_boot: int = 1000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.max_networks is not None and (isinstance(self.max_networks, bool) or self.max_networks < 1):
            raise EnsembleError(f"--max-networks must be a whole number of at least 1 (the networks the exported "
                                f"model may hold), got {self.max_networks!r}")
        if self.bag_models not in BAG_MODELS:
            raise EnsembleError(f"--bag-models {self.bag_models!r} is not one of {', '.join(BAG_MODELS)}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise EnsembleError(f"--threshold-rule {self.threshold_rule!r} is not one of {', '.join(THRESHOLD_RULES)}")
        if not 0.0 <= self.fold_noise_share < 1.0:
            raise EnsembleError(f"fold noise share {self.fold_noise_share} must be in [0, 1): the share of a fold "
                                "model's margin variance that averaging the folds reduces (0 turns the correction off)")
