"""search: Ray Tune sweeps over trainers/, with Optuna TPE proposals and ASHA early stopping.

    cfg = load_sweep_config("configs/sweep_covid_ct.yaml")
    table = launch(cfg, "runs/sweep")          # resumes if runs/sweep holds a sweep
    table = load_results("runs/sweep")

Names load on first use (PEP 562): reading a sweep folder (`search.record`) or its
config never imports Ray; only launching or reading Tune's own state does.
"""
from __future__ import annotations

from trainers._lazy import lazy_exports

# public name -> the module that defines it: this package's table of contents
_EXPORTS = {
    "AshaConfig": "config", "SweepConfig": "config", "load_sweep_config": "config", "parse_sweep_config": "config",
    "smoke_test": "config",
    "ClusterError": "cluster", "StorageError": "storage", "launch": "launch", "check_data": "preflight",
    "is_sweep": "record", "read_results": "record", "read_sweep": "record", "trial_dir": "record",
    "SweepCount": "record", "read_sweep_count": "record",
    "BEST_CONFIG": "record", "RESULTS_CSV": "record", "RESULTS_PARQUET": "record", "SWEEP_COUNT": "record",
    "format_table": "results", "load_results": "results", "results_table": "results", "save_results": "results",
    "ParamSpec": "space", "distribution": "space", "parse_space": "space", "suggest": "space",
    "InjectedFault": "trainable", "train_trial": "trainable",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
