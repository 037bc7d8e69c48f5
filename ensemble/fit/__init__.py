"""ensemble.fit: stored predictions to a fitted ensemble; it knows no report and no folder.

    settings      EnsembleSettings, every default `lungsweep ensemble` has
    members       the sweep's ranked trials, their checkpoints or bags, their stored predictions
    bag_spread    out-of-fold margins brought to the spread of the bag mean that ships
    combine       combiners (mean, greedy, stacking), calibration: calibrators, threshold: the decision threshold
    crossfit      fitting on K-1 folds of groups and scoring the last; pipeline: combiner -> calibrator -> threshold
    metrics       clinical metrics with group-bootstrap intervals; data_audit: metrics.json's audit block
    tta           flip test-time augmentation of stored margins (and the per-model margin runtime uses)
    fitting       fit_ensemble: all of the above, to a FittedEnsemble
"""
