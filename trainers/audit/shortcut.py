"""Can the label be told from the image's format alone? A group-cross-validated check.

COVID-CT's positives are figures cut from papers (varied sizes, RGB, arrows, text);
its negatives are uniform scans. A network can learn that source instead of the
disease. Here a small gradient-boosting classifier sees only format features (no
lung pixels beyond border statistics) and predicts the label, cross-validated by
group; an AUC far above 0.5 says the label is predictable without the lungs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..atomic import atomic_write_text
from ..data.discover import Dataset
from ..data.images import DecodedImages, _to_grey, default_cache_dir
from ..progress import progress_bar

__all__ = ["format_features", "shortcut_auc", "FEATURES", "SHORTCUT_WARN_AUC"]

log = logging.getLogger(__name__)

SHORTCUT_WARN_AUC = 0.7
_FEATURES_VERSION = 1
_MODES = ("L", "RGB", "RGBA", "P")
_FORMATS = ("PNG", "JPEG")
_THUMB = 256  # ink shares are measured on a thumbnail of at most this side: same shares, a fraction of the cost
FEATURES = (
    "width", "height", "aspect", "log_pixels",
    *(f"mode_{m}" for m in (*_MODES, "other")),
    *(f"format_{f}" for f in (*_FORMATS, "other")),
    "near_white_share", "saturated_share", "border_mean", "border_std", "padding_share",
)


def _file_features(path: str) -> dict[str, Any]:
    """What the original file says about its source: size, mode, type, text-like ink."""
    with Image.open(path) as img:
        width, height, mode, fmt = img.width, img.height, img.mode, img.format or "other"
        if fmt == "JPEG":
            img.draft("RGB", (_THUMB, _THUMB))  # decode at a reduced scale
        img.load()
        img.thumbnail((_THUMB, _THUMB), Image.Resampling.NEAREST)
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            img = _to_grey(img)
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    lo, hi = rgb.min(axis=2), rgb.max(axis=2)
    return {
        "width": width, "height": height, "mode": mode, "format": fmt,
        "near_white_share": float((lo >= 235).mean()),  # labels, white text and annotation boxes
        "saturated_share": float(((hi - lo) >= 60).mean()),  # coloured arrows and marks
    }


def _cached_file_features(
    dataset: Dataset, *, fingerprint: str, cache_dir: str | Path | None, progress: bool
) -> list[dict[str, Any]]:
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"{fingerprint[:32]}-format-v{_FEATURES_VERSION}.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("ids") == list(dataset.ids):
            return cached["rows"]
    except (OSError, ValueError, AttributeError):
        pass
    rows = []
    for p in progress_bar(dataset.paths, total=len(dataset), desc="format features", enabled=progress):
        try:
            rows.append(_file_features(p))
        except (OSError, SyntaxError, ValueError) as e:  # a bad image: skipped by the caller via `keep`
            log.debug("no format features for %s: %s", p, e)
            rows.append({})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"ids": list(dataset.ids), "rows": rows}))
    except OSError as e:
        log.warning("could not write format-feature cache %s: %s", path, e)
    return rows


def format_features(
    dataset: Dataset,
    images: DecodedImages,
    *,
    fingerprint: str,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """(N, len(FEATURES)) float features; rows of undecodable images are NaN."""
    rows = _cached_file_features(dataset, fingerprint=fingerprint, cache_dir=cache_dir, progress=progress)
    array = np.asarray(images.array)
    out = np.full((len(dataset), len(FEATURES)), np.nan)
    for i, row in enumerate(rows):
        if not row or not images.keep[i]:
            continue
        w, h = row["width"], row["height"]
        square = array[i].astype(np.float64)
        ring = np.concatenate([square[:2].ravel(), square[-2:].ravel(), square[2:-2, :2].ravel(), square[2:-2, -2:].ravel()])
        empty_rows = (square.max(axis=1) == 0).mean()
        empty_cols = (square.max(axis=0) == 0).mean()
        out[i] = [
            w, h, w / h, np.log(w * h),
            *(row["mode"] == m for m in _MODES), row["mode"] not in _MODES,
            *(row["format"] == f for f in _FORMATS), row["format"] not in _FORMATS,
            row["near_white_share"], row["saturated_share"], ring.mean(), ring.std(), max(empty_rows, empty_cols),
        ]
    return out


def shortcut_auc(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Out-of-fold AUC of a gradient-boosting classifier on `features`, folds by group.

    Returns {"auc", "folds", "images", "model", "warning"}; "auc" is None (with "error")
    when a class has fewer than two groups.
    """
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    keep = ~np.isnan(features).any(axis=1)
    x, y, g = features[keep], np.asarray(labels)[keep], np.asarray(groups)[keep]
    model = "GradientBoostingClassifier(n_estimators=100, max_depth=3)"
    per_class = [len(set(g[y == c])) for c in np.unique(y)]
    folds = min([n_splits, *per_class])
    if len(per_class) < 2 or folds < 2:
        return {"auc": None, "folds": 0, "images": int(keep.sum()), "model": model, "warning": False,
                "error": "fewer than two groups in a class: no group cross-validation possible"}
    oof = np.zeros(len(y))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in cv.split(x, y, g):
        # exact (not histogram) boosting: on a few hundred rows it is ~10x faster than the OpenMP one on shared cores
        clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed)
        clf.fit(x[train], y[train])
        oof[test] = clf.predict_proba(x[test])[:, 1]
    auc = float(roc_auc_score(y, oof))
    return {"auc": round(auc, 4), "folds": folds, "images": int(len(y)), "model": model,
            "warning": auc > SHORTCUT_WARN_AUC, "error": None}
