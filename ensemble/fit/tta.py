"""Flip test-time augmentation for fitting: a member's stored margins recomputed on each image and its mirror.

The stored predictions a sweep wrote have no TTA; with `--tta` the ensemble is fitted on margins
recomputed here, from the members' own models and their training data, so that what is fitted is
what ensemble.runtime.model predicts with (it averages each model's margin with the mirror's the same
way, through `model_margins`).
"""
from __future__ import annotations

import numpy as np
import torch

from trainers import Preprocessing, TrainConfig, load_model, predict_margins, prepare_data

from .members import Member, StoredPredictions, fill_unscored

__all__ = ["model_margins", "tta_predictions"]


def model_margins(
    model: torch.nn.Module, prep: Preprocessing, images: np.ndarray, *, tta: bool, device: torch.device,
    batch_size: int = 64,
) -> np.ndarray:
    """Logit margins of one model on (N, S, S) uint8 images; with TTA, averaged with the mirror image."""
    margins = predict_margins(model, images, prep, device=device, batch_size=batch_size)
    if tta:
        mirrored = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
        margins = (margins + predict_margins(model, mirrored, prep, device=device, batch_size=batch_size)) / 2
    return margins


def tta_predictions(members: list[Member], preds: StoredPredictions, split: str,
                    device: torch.device) -> StoredPredictions:
    """Recompute margins with flip test-time augmentation (each model sees the image and its mirror).

    A bag's out-of-fold margin comes from the fold model that predicted that image; its
    holdout margin is the mean over its fold models, as stored without TTA.
    """
    columns = []
    images_by_size: dict[int, np.ndarray] = {}  # members share the data; only their image size differs
    for m in members:
        size = int(m.config["image_size"])
        if size not in images_by_size:
            data = prepare_data(TrainConfig.from_dict({**m.config, "progress": False, "fold": None}))
            position = {sample_id: i for i, sample_id in enumerate(data.dataset.ids)}
            images_by_size[size] = np.asarray(data.images.array[[position[i] for i in preds.ids]])
        images = images_by_size[size]
        trained = split == "oof"  # each fold model trained scored its own part of the pool, whatever ships
        column = np.zeros(len(preds.ids))
        counts = np.zeros(len(preds.ids))
        for k, folder in zip(m.folds(trained=trained), m.model_folders(trained=trained)):
            model, meta = load_model(folder)
            model.to(device)
            if split == "oof":
                rows = np.array([m.meta["oof"].get(i, {}).get("fold") == k for i in preds.ids])
            else:
                rows = np.ones(len(preds.ids), dtype=bool)
            if rows.any():
                prep = Preprocessing.from_dict(meta["preprocessing"])
                column[rows] += model_margins(model, prep, images[rows], tta=True, device=device)
                counts[rows] += 1
        with np.errstate(invalid="ignore"):  # a stopped bag has no fold model for part of the pool
            columns.append(column / counts)
    margins = np.stack(columns, axis=1)
    if preds.scored is not None:
        margins = fill_unscored(margins, preds.scored)
    return StoredPredictions(ids=preds.ids, y=preds.y, groups=preds.groups, margins=margins, scored=preds.scored)
