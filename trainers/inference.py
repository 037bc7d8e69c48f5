"""From cached uint8 images to model outputs: the one preprocessing path for every command."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from scipy.special import expit

from .data.images import PREPROCESSING_VERSION
from .errors import ConfigError, DataError

__all__ = ["Preprocessing", "mixed_precision_dtype", "resolve_device", "shared_reading", "to_input", "predict_margins",
           "sigmoid"]


def resolve_device(name: str) -> torch.device:
    """The device for training and inference: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu", "cuda:N"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"'device' {name!r} asked for, but torch sees no CUDA GPU; use device: cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: decode_image(path, image_size, window=window), then (x / 255 - mean) / std.

    window and slices matter for DICOM / NIfTI only (trainers.data.medical); a checkpoint
    written before they existed reads as the defaults, which leave PNG/JPEG unchanged.
    """

    image_size: int
    mean: float
    std: float
    window: Any = "auto"  # str or [width, level], as TrainConfig.window
    slices: str = "middle"

    def to_dict(self) -> dict[str, object]:
        return {
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "channels": 1,
            "resize": "keep aspect ratio, bilinear, zero-pad to a centred square",
            "scale": "x / 255, then (x - mean) / std",
            "version": PREPROCESSING_VERSION,
            "window": self.window,
            "slices": self.slices,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Preprocessing":
        return cls(
            image_size=int(d["image_size"]), mean=float(d["mean"]), std=float(d["std"]),
            window=d.get("window", "auto"), slices=str(d.get("slices", "middle")),
        )


def shared_reading(preps: Iterable[Preprocessing]) -> tuple[Any, str]:
    """(window, slices) that every member reads its images with; members that disagree cannot share one decode."""
    readings = {(json.dumps(p.window), p.slices) for p in preps}
    if len(readings) != 1:
        raise DataError(
            f"the members read DICOM/NIfTI images differently {sorted(readings)} (window, slices); "
            "ensemble only models trained with one window and slice policy"
        )
    window, slices = readings.pop()
    return json.loads(window), slices


def to_input(
    batch: torch.Tensor, prep: Preprocessing, device: torch.device, *, channels_last: bool = False
) -> torch.Tensor:
    """(B, S, S) uint8 -> (B, 1, S, S) float32 normalised, on `device`."""
    x = batch.to(device, non_blocking=True).unsqueeze(1).float()
    x = x.mul_(1.0 / (255.0 * prep.std)).sub_(prep.mean / prep.std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """Training autocast: bf16 where the GPU has it natively (compute capability 8.0+), else fp16
    (with a GradScaler); None (fp32) off CUDA.

    torch.cuda.is_bf16_supported() also says yes on T4 / V100, where bf16 is emulated and slow.
    """
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def predict_margins(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    prep: Preprocessing,
    *,
    device: torch.device,
    batch_size: int = 128,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Logit margins (positive minus negative logit) for (N, S, S) uint8 images.

    Models are trained on binary targets, so output 1 is always the positive class
    and output 0 the other, whatever the folders' sort order. sigmoid(margin) is the
    softmax probability of the positive class; temperature scaling divides the margin.
    """
    # weights and inputs channels_last on every device: EfficientNet-Lite0 predicts 1.7x faster on 2 CPU cores
    # (channels_last inputs alone gain nothing); the weights keep their values, only their layout changes. Outside
    # inference mode: weights relaid out inside it could not be trained or explained (Grad-CAM) afterwards.
    model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _margins(model, images, prep, device=device, batch_size=batch_size, autocast_dtype=autocast_dtype)


def _margins(model: torch.nn.Module, images: np.ndarray | torch.Tensor, prep: Preprocessing, *,
             device: torch.device, batch_size: int, autocast_dtype: torch.dtype | None) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if isinstance(batch, np.ndarray):  # a copy per batch: cached arrays are read-only memory maps
            batch = torch.from_numpy(np.array(batch))
        x = to_input(batch, prep, device, channels_last=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None), \
                _tf32(device, allowed=autocast_dtype is not None):
            logits = model(x).float()
        out.append((logits[:, 1] - logits[:, 0]).cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


@contextmanager
def _tf32(device: torch.device, *, allowed: bool) -> Iterator[None]:
    """fp32 predictions are full fp32: training turns TF32 on (10-bit mantissa) for CUDA matmuls and convolutions."""
    if device.type != "cuda" or allowed:
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def sigmoid(margin: np.ndarray) -> np.ndarray:
    return expit(np.asarray(margin, dtype=np.float64))
