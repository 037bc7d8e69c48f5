"""Benchmarks of ensembles: members, selection, calibration, intervals, prediction throughput, Grad-CAM."""
