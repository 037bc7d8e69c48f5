"""Benchmarks of lungsweep, run from the repository root as modules, e.g.

    .venv/bin/python -m bench.jobs.bench_outer --arms quick

Groups: searching (sweeps, soaks, GPU packing), training (trainer, decoding, grouping,
audit), ensembling (ensembles, selection, calibration, intervals, prediction, Grad-CAM),
jobs (the main job, outer splits). bench.common holds what the scripts share; figures are
in BENCHMARKS.md. Not installed with the project: it lives in the checkout.
"""
