"""search: Ray Tune sweeps over trainers/, with Optuna TPE proposals and ASHA early stopping.

    cfg = load_sweep_config("configs/sweep_covid_ct.yaml")
    table = launch(cfg, "runs/sweep")          # resumes if runs/sweep holds a sweep
    table = load_results("runs/sweep")
"""
from .config import AshaConfig, SweepConfig, load_sweep_config, parse_sweep_config, smoke_test
from .launch import StorageError, launch
from .results import format_table, load_results, results_table, save_results
from .space import ParamSpec, parse_space, suggest
from .trainable import InjectedFault, train_trial

__all__ = [
    "AshaConfig", "InjectedFault", "ParamSpec", "StorageError", "SweepConfig", "format_table", "launch",
    "load_results", "load_sweep_config", "parse_space", "parse_sweep_config", "results_table", "save_results",
    "smoke_test", "suggest", "train_trial",
]
