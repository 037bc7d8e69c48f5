"""Mixed precision trains; what is stored (validation and holdout margins) is fp32, as export and predict run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests_support import tiny_config

from trainers import load_model, predict_margins, prepare_data, train
from trainers.inference import Preprocessing, mixed_precision_dtype

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_no_autocast_off_cuda():
    assert mixed_precision_dtype(torch.device("cpu")) is None


@pytest.mark.cuda
@cuda
def test_bf16_only_where_the_gpu_has_it_natively():
    major, _ = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if major >= 8 else torch.float16
    assert mixed_precision_dtype(torch.device("cuda")) == expected


@pytest.mark.cuda
@cuda
def test_stored_margins_equal_an_fp32_recomputation(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, device="cuda", epochs=2)
    train(cfg, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())
    assert meta["metrics"]["gpu_memory_peak_mib"] > 0, "a CUDA run records what it held of the GPU"
    model, _ = load_model(tmp_path / "run" / "best")  # on CPU, in fp32: what export and predict compute
    data = prepare_data(cfg)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    for split in ("val", "holdout"):
        rows = getattr(data.split, split)
        recomputed = predict_margins(model, np.asarray(data.images.array[rows]), prep, device=torch.device("cpu"))
        stored = np.array([meta["predictions"][split][data.dataset.ids[i]]["logit"] for i in rows])
        assert len(stored) > 0
        assert np.max(np.abs(stored - recomputed)) < 1e-4, (split, np.max(np.abs(stored - recomputed)))
