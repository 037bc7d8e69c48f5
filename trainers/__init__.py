"""trainers: train one chest-image classifier well. Knows nothing of Ray.

    cfg = TrainConfig(data="covid-ct/train", model="resnet18", epochs=10)
    result = train(cfg, "runs/one", on_epoch=lambda report: None)
"""
from .checkpoint import load_model, load_weights, read_meta, save_checkpoint
from .config import TrainConfig, load_yaml, merge_config
from .data import Dataset, discover, infer_group
from .errors import (
    BadImageError,
    CheckpointError,
    ConfigError,
    DataError,
    LungsweepError,
    SplitError,
    WeightsError,
)
from .images import decode_image, load_images
from .inference import Preprocessing, predict_margins, sigmoid
from .loop import EpochReport, TrainResult, train
from .models import create_model
from .prepare import PreparedData, prepare_data
from .pretrained import PretrainedInfo, load_pretrained
from .splits import Split, split_dataset

__all__ = [
    "BadImageError", "CheckpointError", "ConfigError", "DataError", "Dataset", "EpochReport",
    "LungsweepError", "PreparedData", "Preprocessing", "PretrainedInfo", "Split", "SplitError",
    "TrainConfig", "TrainResult", "WeightsError", "create_model", "decode_image", "discover",
    "infer_group", "load_images", "load_model", "load_pretrained", "load_weights", "load_yaml", "merge_config",
    "predict_margins", "prepare_data", "read_meta", "save_checkpoint", "sigmoid", "split_dataset", "train",
]
