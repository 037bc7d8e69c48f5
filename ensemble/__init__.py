"""ensemble: combine a sweep's best checkpoints, calibrate, and report metrics a clinical team can trust.

    metrics = build_ensemble("runs/sweep", "runs/ens", EnsembleSettings(method="greedy"))
    model = EnsembleModel.load("runs/ens")
    metrics = evaluate("runs/ens", "new_patients/")
    export_model("runs/ens", "runs/model")              # one ONNX graph + manifest.json
    model = ExportedModel.load("runs/model")            # verified by sha256, run by onnxruntime
    explain(load_explainable("runs/ens"), samples, "runs/explain")   # where the models look (Grad-CAM)

Each folder has one owner of its names, writing and reading: ensemble_folder (ENS_DIR),
artifact (MODEL_DIR); folders tells the kinds apart by asking the owners.

Everything fitted here sees only the members' holdout predictions; every number
reported is cross-fitted over holdout groups. Names load on first use (PEP 562).
"""
from __future__ import annotations

from trainers._lazy import lazy_exports

_EXPORTS = {
    "ArtifactError": "artifact", "ExportedModel": "artifact", "is_model_folder": "artifact",
    "read_manifest": "artifact",
    "FittedEnsemble": "build", "build_ensemble": "build", "fit_ensemble": "build",
    "IsotonicCalibration": "calibration", "PlattScaling": "calibration", "TemperatureScaling": "calibration",
    "make_calibrator": "calibration", "select_calibrator": "calibration",
    "GreedyEnsemble": "combine", "MeanEnsemble": "combine", "StackingEnsemble": "combine", "make_combiner": "combine",
    "check_crossfit": "crossfit", "crossfit_predict": "crossfit",
    "is_ensemble_folder": "ensemble_folder", "member_dir": "ensemble_folder", "read_ensemble_json": "ensemble_folder",
    "read_holdout_predictions": "ensemble_folder", "read_metrics": "ensemble_folder",
    "report_path": "ensemble_folder", "write_ensemble": "ensemble_folder",
    "EnsembleError": "errors",
    "evaluate": "evaluate",
    "ExplainError": "cam", "EnsembleCam": "cam",
    "MassShares": "border", "content_box": "border", "mass_shares": "border",
    "explain": "explain", "load_explainable": "explain", "explain_section": "explain_section",
    "export_model": "export",
    "EnsembleGraph": "graph",
    "Candidates": "members", "Member": "members", "pick_members": "members", "select_members": "members",
    "bootstrap_metrics": "metrics", "clinical_metrics": "metrics",
    "EnsembleModel": "model",
    "CALIBRATIONS": "pipeline", "EnsemblePipeline": "pipeline",
    "ReportData": "report", "ReportSection": "report", "write_report": "report",
    "EnsembleSettings": "settings",
    "choose_threshold": "threshold",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
