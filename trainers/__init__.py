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
    "audit_config": "audit", "audit_dataset": "audit", "audit_summary": "audit", "write_audit": "audit",
    "BagResult": "bag", "FoldReport": "bag", "read_bag": "bag", "train_bag": "bag",
    "load_model": "checkpoint", "load_weights": "checkpoint", "read_meta": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config", "load_yaml": "config", "merge_config": "config",
    "Dataset": "data", "discover": "data", "infer_group": "data",
    "BadImageError": "errors", "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors",
    "LungsweepError": "errors", "MetricsError": "errors", "SplitError": "errors", "WeightsError": "errors",
    "merge_duplicate_groups": "duplicates", "group_summary": "groups",
    "decode_image": "images", "decode_image_sizes": "images", "load_images": "images",
    "is_medical": "medical", "read_slice": "medical",
    "Preprocessing": "inference", "predict_margins": "inference", "sigmoid": "inference",
    "EpochReport": "loop", "TrainResult": "loop", "train": "loop",
    "create_model": "models",
    "PreparedData": "prepare", "prepare_data": "prepare",
    "PretrainedInfo": "pretrained", "load_pretrained": "pretrained",
    "Split": "splits", "split_dataset": "splits",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
