"""ensemble: combine a sweep's best checkpoints, calibrate, and report metrics a clinical team can trust.

    metrics = build_ensemble("runs/sweep", "runs/ens", EnsembleSettings(method="greedy"))
    model = EnsembleModel.load("runs/ens")
    metrics = evaluate("runs/ens", "new_patients/")
    export_model("runs/ens", "runs/model")              # one ONNX graph + manifest.json
    model = ExportedModel.load("runs/model")            # verified by sha256, run by onnxruntime
    explain(load_explainable("runs/ens"), samples, "runs/explain")   # where the models look (Grad-CAM)

Rooms, lower first; each imports only the rooms above it in this list:
    errors, _checks  the one error root (EnsembleError; ExplainError and ArtifactError beside it); shared checks
    folders/         the on-disk formats: ENS_DIR (ensemble_dir), MODEL_DIR (model_dir), which kind a path is (kinds)
    fit/             stored predictions to a fitted ensemble: members, combiners, calibrators, threshold,
                     cross-fitting, the pipeline, metrics; it knows no report and no folder
    runtime/         images to P(positive): the in-process ensemble, the exported runner, one load_predictor
    explaining/      Grad-CAM of the members and the border measure, on top of runtime
    report/          report.html: the page, its figures, and `sections`, which picks and orders the sections
    ship/            export, predict, evaluate
    build            `lungsweep ensemble`: fit, then assemble the report, then write ENS_DIR

Everything fitted here sees only the members' holdout predictions; every number
reported is cross-fitted over holdout groups. Names load on first use (PEP 562), as in
trainers and search, so that the command line and a sweep's readers pay for nothing they do not run.
"""
from __future__ import annotations

from trainers._lazy import lazy_exports

# public name -> the module that defines it: this package's table of contents, one line per room
_EXPORTS = {
    "ArtifactError": "errors", "EnsembleError": "errors", "ExplainError": "errors",
    # folders/
    "EnsembleFolder": "folders.ensemble_dir", "METRICS_JSON": "folders.ensemble_dir",
    "REPORT_HTML": "folders.ensemble_dir",
    "is_ensemble_folder": "folders.ensemble_dir", "member_dir": "folders.ensemble_dir",
    "read_ensemble": "folders.ensemble_dir", "read_ensemble_json": "folders.ensemble_dir",
    "read_holdout_predictions": "folders.ensemble_dir", "read_metrics": "folders.ensemble_dir",
    "report_path": "folders.ensemble_dir", "write_ensemble": "folders.ensemble_dir",
    "MODEL_FORMAT": "folders.model_dir", "is_model_folder": "folders.model_dir", "read_manifest": "folders.model_dir",
    "refuse_pickle": "folders.model_dir",
    "FolderKind": "folders.kinds", "kind_of": "folders.kinds",
    # fit/
    "BAG_MODELS": "fit.settings", "EnsembleSettings": "fit.settings", "THRESHOLD_RULES": "fit.settings",
    "ALL": "fit.members", "Member": "fit.members", "StoredPredictions": "fit.members",
    "check_member_count": "fit.members", "fill_unscored": "fit.members", "holdout_predictions": "fit.members",
    "load_member_meta": "fit.members", "mean_spread": "fit.members", "oof_predictions": "fit.members",
    "pick_members": "fit.members", "read_candidates": "fit.members", "select_members": "fit.members",
    "COMBINERS": "fit.combine", "GreedyEnsemble": "fit.combine", "MeanEnsemble": "fit.combine",
    "StackingEnsemble": "fit.combine", "make_combiner": "fit.combine",
    "CALIBRATORS": "fit.calibration", "IsotonicCalibration": "fit.calibration", "PlattScaling": "fit.calibration",
    "TemperatureScaling": "fit.calibration", "make_calibrator": "fit.calibration", "select_calibrator": "fit.calibration",
    "check_crossfit": "fit.crossfit", "crossfit_predict": "fit.crossfit", "crossfit_splits": "fit.crossfit",
    "choose_threshold": "fit.threshold", "sensitivity_bound": "fit.threshold",
    "CALIBRATIONS": "fit.pipeline", "EnsemblePipeline": "fit.pipeline",
    "METRIC_NAMES": "fit.metrics", "bootstrap_metrics": "fit.metrics", "clinical_metrics": "fit.metrics",
    "metric_text": "fit.metrics",
    "audit_block": "fit.data_audit", "grouping_statement": "fit.data_audit",
    "model_margins": "fit.tta", "tta_predictions": "fit.tta",
    "FittedEnsemble": "fit.fitting", "cross_fit": "fit.fitting", "fit_ensemble": "fit.fitting",
    # runtime/
    "EnsembleModel": "runtime.model", "LoadedMember": "runtime.model", "load_member": "runtime.model",
    "ExportedModel": "runtime.exported",
    "Predictor": "runtime.predictor", "load_predictor": "runtime.predictor", "proba_for_dataset": "runtime.predictor",
    "decode_for": "runtime.predictor", "stack_for": "runtime.predictor",
    "find_images": "runtime.inputs", "samples": "runtime.inputs",
    # explaining/
    "EnsembleCam": "explaining.cam",
    "MassShares": "explaining.border", "content_box": "explaining.border", "mass_shares": "explaining.border",
    "TARGETS": "explaining.explain", "explain": "explaining.explain", "explain_samples": "explaining.explain",
    "format_summary": "explaining.explain", "load_explainable": "explaining.explain", "samples_of": "explaining.explain",
    "training_samples": "explaining.explain",
    # report/
    "ReportData": "report.page", "ReportSection": "report.page", "write_report": "report.page",
    "report_data": "report.sections", "explain_section": "report.explain_section",
    # ship/
    "EnsembleGraph": "ship.graph", "GraphMember": "ship.graph",
    "export_model": "ship.export", "write_onnx": "ship.export",
    "evaluate": "ship.evaluate", "format_metrics": "ship.evaluate",
    "predict": "ship.predict",
    "build_ensemble": "build",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
