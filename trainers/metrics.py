"""Per-epoch binary metrics, all from scikit-learn."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score, roc_auc_score

__all__ = ["binary_metrics"]


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, auc, f1, sensitivity, specificity, nll at `threshold`; y_true is 1 for positive."""
    y_true = np.asarray(y_true, dtype=np.int64)
    p = np.clip(np.asarray(p_positive, dtype=np.float64), 1e-7, 1 - 1e-7)
    y_pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "auc": float(roc_auc_score(y_true, p)) if both else float("nan"),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "sensitivity": float(recall_score(y_true, y_pred, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y_true, y_pred, pos_label=0, zero_division=0)),
        "nll": float(log_loss(y_true, p, labels=[0, 1])),
    }
