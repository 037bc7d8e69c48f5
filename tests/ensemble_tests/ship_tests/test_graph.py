"""EnsembleGraph computes what the fitted EnsemblePipeline computes, for every combiner and calibrator."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tests_support import new_images, reference_proba

from ensemble import (
    CALIBRATORS, EnsembleGraph, EnsembleModel, EnsemblePipeline, GraphMember, holdout_predictions, pick_members,
)


@pytest.mark.parametrize("method", ["mean", "greedy", "stack"])
@pytest.mark.parametrize("calibration", sorted(CALIBRATORS))
def test_graph_computes_what_the_pipeline_computes(sweep_dir, tmp_path, method, calibration):
    members = pick_members(sweep_dir, top=3)
    preds = holdout_predictions(members)
    pipe = EnsemblePipeline(method=method, calibration=calibration, n_splits=3).fit(preds.margins, preds.y, preds.groups)
    loaded = EnsembleModel.load  # members as the ensemble folder would load them
    refs = [loaded(m.checkpoint).members[0] for m in members]
    model = EnsembleModel(members=refs, pipeline=pipe, tta=method == "stack", classes=["a", "b"], positive="a",
                          manifest={})
    graph = EnsembleGraph([GraphMember(r.trial_id, r.models, r.prep) for r in refs], pipe, tta=model.tta)
    images = new_images(tmp_path / "new", sorted({r.prep.image_size for r in refs}))
    with torch.no_grad():  # a member the combiner gives no weight is left out, with its input if it was alone
        got = graph.eval()(*(torch.from_numpy(images[s]).unsqueeze(1) for s in graph.image_sizes)).numpy()
    np.testing.assert_allclose(got, reference_proba(model, images), atol=1e-6)
