"""lungsweep: sweeps, ensembles and calibrated metrics for chest CT / X-ray classifiers.

The command line lives in lungsweep.cli; the work in trainers/, search/ and ensemble/.
"""
