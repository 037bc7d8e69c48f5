"""Experiment tracking: a sweep's trials where users already look (TensorBoard or MLflow).

    tracking: tensorboard    each trial's metrics as TensorBoard events in RUN_DIR/trial_*/
                             (open with: tensorboard --logdir RUN_DIR)
    tracking: mlflow         one MLflow run per trial in the experiment named after the sweep,
                             stored in RUN_DIR/mlflow.db unless tracking_uri names a server or
                             database (open with: mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db)

Ray Tune's own logger callbacks do the logging. MLflow 3 keeps its file store in maintenance
mode (it refuses `./mlruns` by default), so the local default is a SQLite database.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from trainers.errors import ConfigError

from .config import SweepConfig

__all__ = ["MLFLOW_DB", "tracking_callbacks"]

MLFLOW_DB = "mlflow.db"


def tracking_callbacks(cfg: SweepConfig, run_dir: str | Path, experiment: str) -> list[Any]:
    if cfg.tracking == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback

        return [TBXLoggerCallback()]
    if cfg.tracking == "mlflow":
        if importlib.util.find_spec("mlflow") is None:  # Ray's callback imports it late: fail here, by name
            raise ConfigError("tracking: mlflow needs the mlflow package: `pip install mlflow-skinny` "
                              "(or `pip install lungsweep[tracking]`), or set tracking: tensorboard")
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        if cfg.tracking_uri is None and "://" in str(run_dir):
            raise ConfigError(f"tracking: mlflow with storage {run_dir}: the default SQLite file needs a local "
                              "RUN_DIR; give tracking_uri (an MLflow server or database URL)")
        uri = cfg.tracking_uri or f"sqlite:///{Path(run_dir).resolve() / MLFLOW_DB}"
        return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, save_artifact=False)]
    return []
