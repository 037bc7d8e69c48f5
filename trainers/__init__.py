"""trainers: train one chest-image classifier well. Knows nothing of Ray.

    cfg = TrainConfig(data="covid-ct/train", model="resnet18", epochs=10)
    result = train(cfg, "runs/one", on_epoch=lambda report: None)

Names load on first use (PEP 562), so `from trainers.errors import ...` or the
command line's --help do not pay for importing torch.
"""
from __future__ import annotations

from ._lazy import lazy_exports

# public name -> the module that defines it: this package's table of contents
_EXPORTS = {
    "audit_config": "audit.report", "audit_dataset": "audit.report", "audit_summary": "audit.report", "write_audit": "audit.report",
    "BagResult": "bag", "FoldReport": "bag", "existing_bag": "bag", "read_bag": "bag", "train_bag": "bag",
    "BEST": "run_folder", "resume_point": "run_folder",
    "load_model": "checkpoint", "load_weights": "checkpoint", "read_meta": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config", "load_yaml": "config", "merge_config": "config",
    "Dataset": "data.discover", "discover": "data.discover", "infer_group": "data.discover",
    "BadImageError": "errors", "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors",
    "LungsweepError": "errors", "MetricsError": "errors", "SplitError": "errors", "WeightsError": "errors",
    "merge_duplicate_groups": "data.duplicates", "group_summary": "data.groups",
    "decode_image": "data.images", "decode_image_sizes": "data.images", "load_images": "data.images",
    "is_medical": "data.medical", "read_slice": "data.medical",
    "Preprocessing": "inference", "predict_margins": "inference", "resolve_device": "inference", "sigmoid": "inference",
    "EpochReport": "loop", "TrainResult": "loop", "train": "loop",
    "create_model": "models.factory",
    "PreparedData": "data.prepare", "prepare_data": "data.prepare",
    "PretrainedInfo": "models.pretrained", "load_pretrained": "models.pretrained",
    "Split": "data.splits", "split_dataset": "data.splits",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
