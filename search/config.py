"""The sweep config (sweep.yaml): typed, validated once, with messages that quote the culprit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from trainers import TrainConfig, load_yaml
from trainers.config import MONITOR_METRICS, SPLIT_KEYS, check_overridden
from trainers.errors import ConfigError

from .space import ParamSpec, parse_space

__all__ = ["AshaConfig", "SweepConfig", "load_sweep_config", "smoke_test"]

MODES = ("max", "min")
TRACKING = ("none", "tensorboard", "mlflow")
PATH_KEYS = ("data", "manifest", "cache_dir", "pretrained_file")


@dataclass(frozen=True)
class AshaConfig:
    max_epochs: int = 12  # every trial's epoch budget (with cv_folds > 1: every fold's); ASHA's max_t
    grace_period: int = 2  # epochs (with cv_folds > 1: folds) before a trial can be stopped
    reduction_factor: int = 3


@dataclass(frozen=True)
class SweepConfig:
    train: dict[str, Any] = field(default_factory=dict)  # fixed TrainConfig values for every trial
    space: tuple[ParamSpec, ...] = ()
    metric: str = "val_auc"
    mode: str = "max"
    num_samples: int = 16
    max_concurrent: int | None = None  # None: as many as the resources allow
    time_budget_s: float | None = None
    seed: int = 0
    startup_trials: int = 5  # TPE samples at random before it models the space
    storage: str | None = None  # where RUN_DIR lives: a local or shared path, or s3:// / gs://
    study_storage: str | None = None  # keep the Optuna study in an RDB (sqlite path or URL)
    tracking: str = "none"  # also log trials to: tensorboard, mlflow, or none
    tracking_uri: str | None = None  # mlflow: a tracking server or database URL; default RUN_DIR/mlflow.db
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    # False: a fresh worker process per trial, so whatever a trial allocated goes back when it ends (a few
    # seconds of start-up each); True: one worker runs trial after trial, and its memory grows with them
    reuse_actors: bool = False
    # `lungsweep run`'s budget on the networks its exported model holds (ensemble.fit.budget); None: no budget
    max_networks: int | None = None
    keep_checkpoints: int = 2  # best N per trial (the latest is kept as well)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    asha: AshaConfig = field(default_factory=AshaConfig)
    fail_first_attempt_at_epoch: int | None = None  # testing aid: crash each trial once, to exercise retries
    # K > 1: every trial trains K fold models (a bag) and is ranked by its pooled out-of-fold metric
    cv_folds: int = 1
    first_trials: tuple[dict[str, Any], ...] = ()  # configurations TPE tries first (Optuna enqueue_trial)

    @property
    def cross_validated(self) -> bool:
        return self.cv_folds > 1

    @property
    def reported_metric(self) -> str:
        """The column that ranks trials: val_auc (single split) or oof_auc (k-fold), ..."""
        return ranking_metric(self.metric, self.cv_folds)

    @property
    def searcher_metric(self) -> str:
        """What TPE and ASHA see.

        Single split: the trial's best so far, so late overfitting epochs do not hide a good
        trial. k-fold: the pooled out-of-fold metric over the folds done (one report per fold).
        """
        return self.reported_metric if self.cross_validated else f"best_{self.metric}"

    @property
    def max_t(self) -> int:
        """ASHA's budget unit count: epochs (single split) or folds (k-fold)."""
        return self.cv_folds if self.cross_validated else self.asha.max_epochs

    def base_train_config(self) -> TrainConfig:
        """The fixed part of every trial's config (space values replace some of it).

        The trainer monitors the sweep's metric, so its patience and best checkpoint follow it too.
        """
        return TrainConfig.from_dict(
            {**self.train, "epochs": self.asha.max_epochs, "progress": False, "monitor": self.metric,
             "cv_folds": self.cv_folds},
            source="sweep train",
        )

    def image_sizes(self) -> list[int]:
        for spec in self.space:
            if spec.name == "image_size":
                return sorted(set(spec.values))
        return [self.base_train_config().image_size]


def oof_name(metric: str) -> str:
    """val_auc -> oof_auc, val_loss -> oof_loss: the bag's pooled out-of-fold metric."""
    return "oof_" + metric.removeprefix("val_")


def ranking_metric(metric: str, cv_folds: int) -> str:
    """The column that ranks a sweep's trials: `metric` (single split), or its out-of-fold pool (k-fold)."""
    return oof_name(metric) if cv_folds > 1 else metric


_SCALARS = {f.name for f in dataclasses.fields(SweepConfig)} - {"train", "space", "asha", "first_trials"}


BUNDLED = ("default", "quick")  # sweeps shipped inside the package (search/sweeps/NAME.yaml)


def bundled_sweep(name: str) -> Path:
    """The path of a sweep shipped with lungsweep, wherever it is installed."""
    if name not in BUNDLED:
        raise ConfigError(f"no bundled sweep {name!r}; bundled: {', '.join(BUNDLED)}")
    return Path(str(resources.files("search") / "sweeps" / f"{name}.yaml"))


def load_sweep_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """A sweep.yaml (or a bundled sweep's name; None: the bundled default), merged with overrides."""
    if path is None or (str(path) in BUNDLED and not Path(path).exists()):
        path = bundled_sweep(str(path or "default"))
    raw: dict[str, Any] = dict(load_yaml(path))
    from_file = dict(raw)
    src = str(path)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "data":
            raw.setdefault("train", {})
            raw["train"] = {**_mapping(raw["train"], "train", src), "data": value}
        else:
            raw[key] = value
    cfg = parse_sweep_config(raw, source=src)
    # train: is compared as a whole; only its data can be overridden, and only by a path
    check_overridden({k: v for k, v in from_file.items() if k != "train"}, raw, src,
                     lambda values: parse_sweep_config(values, source=src))
    return cfg


def _mapping(value: Any, key: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{source}: {key!r} must be a mapping of keys to values (key: value lines under {key}:), "
            f"got a {type(value).__name__}: {value!r}"
        )
    return dict(value)


def parse_sweep_config(raw: Mapping[str, Any], *, source: str = "sweep config") -> SweepConfig:
    allowed = sorted(_SCALARS | {"train", "space", "asha", "first_trials"})
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    train = _mapping(raw.get("train"), "train", source)
    hints = {"epochs": "asha.max_epochs sets every trial's epochs", "progress": "trials never draw bars",
             "monitor": "the sweep's metric is every trial's monitor", "cv_folds": "use the top-level cv_folds",
             "fold": "a trial trains every fold"}
    for reserved, hint in hints.items():
        if reserved in train:
            raise ConfigError(f"{source}: train.{reserved} is set by the sweep ({hint}); remove it")
    # Trials run in their own folders, on any node: a relative path must not depend on where they run.
    for key in PATH_KEYS:
        if isinstance(train.get(key), str) and "://" not in train[key]:
            train[key] = str(Path(train[key]).expanduser().resolve())
    TrainConfig.from_dict(train, source=f"{source}: train")  # names the bad key or value
    asha_raw = raw.get("asha") or {}
    if not isinstance(asha_raw, Mapping):
        raise ConfigError(f"{source}: 'asha' must be a mapping, got {asha_raw!r}")
    asha_fields = {f.name for f in dataclasses.fields(AshaConfig)}
    bad = sorted(set(asha_raw) - asha_fields)
    if bad:
        raise ConfigError(f"{source}: unknown key 'asha.{bad[0]}'; allowed: {', '.join(sorted(asha_fields))}")
    for k, v in asha_raw.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(f"{source}: 'asha.{k}' must be an integer, got {v!r}")
    asha = AshaConfig(**asha_raw)
    scalars = {k: raw[k] for k in _SCALARS if k in raw}
    for k, v in scalars.items():
        _check_type(source, k, v)
    if isinstance(raw.get("space"), Mapping):
        for key in raw["space"]:
            _refuse_split_key(source, f"space.{key}", key)
    space = parse_space(raw.get("space") or {}, fixed=train)
    cfg = SweepConfig(
        train=train,
        space=space,
        asha=asha,
        first_trials=_first_trials(raw.get("first_trials"), space, train, source),
        **scalars,
    )
    _validate(cfg, source)
    return cfg


def _first_trials(raw: Any, space: tuple[ParamSpec, ...], train: Mapping[str, Any], source: str) -> tuple[dict, ...]:
    """Configurations to try first: each a mapping of space parameters to values inside the space."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(t, Mapping) for t in raw):
        raise ConfigError(f"{source}: 'first_trials' must be a list of mappings {{param: value}}, got {raw!r}")
    names = {s.name: s for s in space}
    for n, trial in enumerate(raw):
        for key, value in trial.items():
            _refuse_split_key(source, f"first_trials[{n}].{key}", key)
            if key not in names:
                raise ConfigError(
                    f"{source}: first_trials[{n}].{key} is not a parameter of the space; "
                    f"space parameters: {', '.join(names) or 'none'}"
                )
            if not names[key].contains(value):
                raise ConfigError(f"{source}: first_trials[{n}].{key} = {value!r} is outside its space {names[key].values!r}")
        TrainConfig.from_dict({**train, **trial}, source=f"{source}: first_trials[{n}]")
    return tuple(dict(t) for t in raw)


def _refuse_split_key(source: str, where: str, key: str) -> None:
    """A setting that changes the images, their labels or the split has one value for the whole sweep."""
    if key not in SPLIT_KEYS:
        return
    remedy = {"cv_folds": "set it once with the top-level cv_folds",
              "fold": "remove it (every trial trains every fold)"}.get(key, "set it once under train: instead")
    raise ConfigError(
        f"{source}: {where}: {key!r} cannot be searched (it changes which images there are or where they fall): "
        "trials must share one split so they are ranked on the same out-of-fold set and judged on the same "
        f"holdout; {remedy}"
    )


def _check_type(source: str, key: str, value: Any) -> None:
    annotation = next(f.type for f in dataclasses.fields(SweepConfig) if f.name == key)
    names = [n.strip() for n in str(annotation).split("|")]
    if value is None and "None" in names:
        return
    ok = (
        ("bool" in names and isinstance(value, bool))
        or ("int" in names and isinstance(value, int) and not isinstance(value, bool))
        or ("float" in names and isinstance(value, (int, float)) and not isinstance(value, bool))
        or ("str" in names and isinstance(value, str))
    )
    if not ok:
        wanted = " or ".join(n for n in names if n != "None")
        raise ConfigError(f"{source}: {key!r} must be {wanted}, got {value!r}")


def _validate(c: SweepConfig, source: str) -> None:
    def bad(key: str, rule: str, value: Any) -> None:
        raise ConfigError(f"{source}: {key!r} {rule}, got {value!r}")

    if c.metric not in MONITOR_METRICS:
        bad("metric", f"must be one of {', '.join(MONITOR_METRICS)}", c.metric)
    if c.mode not in MODES:
        bad("mode", "must be max or min", c.mode)
    if (c.mode == "min") != (c.metric == "val_loss"):
        bad("mode", f"must be {'min' if c.metric == 'val_loss' else 'max'} for metric {c.metric}", c.mode)
    if c.num_samples < 1:
        bad("num_samples", "must be at least 1", c.num_samples)
    if c.max_concurrent is not None and c.max_concurrent < 1:
        bad("max_concurrent", "must be at least 1", c.max_concurrent)
    if c.time_budget_s is not None and c.time_budget_s <= 0:
        bad("time_budget_s", "must be above 0", c.time_budget_s)
    if c.startup_trials < 1:
        bad("startup_trials", "must be at least 1", c.startup_trials)
    if c.max_failures < 0:
        bad("max_failures", "must be 0 or more", c.max_failures)
    if c.max_networks is not None and c.max_networks < 1:
        bad("max_networks", "must be at least 1 (the networks the exported model may hold)", c.max_networks)
    if c.keep_checkpoints < 1:
        bad("keep_checkpoints", "must be at least 1", c.keep_checkpoints)
    if c.cpus_per_trial <= 0:
        bad("cpus_per_trial", "must be above 0", c.cpus_per_trial)
    if c.gpus_per_trial < 0:
        bad("gpus_per_trial", "must be 0 or more", c.gpus_per_trial)
    if c.tracking not in TRACKING:
        bad("tracking", f"must be one of {', '.join(TRACKING)}", c.tracking)
    if c.tracking_uri is not None and c.tracking != "mlflow":
        bad("tracking_uri", "is for tracking: mlflow", c.tracking_uri)
    if c.cv_folds < 1:
        bad("cv_folds", "must be at least 1 (1: one validation split; K > 1: K group folds per trial)", c.cv_folds)
    if c.asha.max_epochs < 1:
        bad("asha.max_epochs", "must be at least 1", c.asha.max_epochs)
    unit = f"cv_folds={c.cv_folds} (with k-fold, ASHA's rungs are folds)" if c.cross_validated else \
        f"asha.max_epochs={c.asha.max_epochs}"
    if not 1 <= c.asha.grace_period <= c.max_t:
        bad("asha.grace_period", f"must be in [1, {unit}]", c.asha.grace_period)
    if c.asha.reduction_factor < 2:
        bad("asha.reduction_factor", "must be at least 2", c.asha.reduction_factor)
    if not c.space:
        raise ConfigError(
            f"{source}: 'space' is empty, so every trial would train the same config; add parameters under "
            "space: (see the bundled sweep: lungsweep launch without --config), or train one model with "
            "`lungsweep train`"
        )


def smoke_test(cfg: SweepConfig) -> SweepConfig:
    """Everything shrunk to run in about a minute on 2 CPU cores."""
    specs = tuple(s for s in cfg.space if s.name != "image_size")
    specs += (ParamSpec(name="image_size", kind="choice", values=(64,)),)
    folds = min(cfg.cv_folds, 2)
    return dataclasses.replace(
        cfg,
        space=specs,
        num_samples=min(cfg.num_samples, 4),
        startup_trials=min(cfg.startup_trials, 2),
        asha=AshaConfig(max_epochs=2 if folds == 1 else 1, grace_period=1, reduction_factor=2),
        time_budget_s=min(cfg.time_budget_s or 300.0, 300.0),
        cv_folds=folds,
        first_trials=tuple({**t, "image_size": 64} if "image_size" in t else t for t in cfg.first_trials),
    )
