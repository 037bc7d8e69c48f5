"""Benchmarks of the search: TPE + ASHA vs random, pretrained candidates, kill-and-resume and soak runs, GPU packing."""
