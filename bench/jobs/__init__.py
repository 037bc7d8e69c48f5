"""Benchmarks of the main job: against one model, and over several outer splits."""
