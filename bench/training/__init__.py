"""Benchmarks of one model's training: trainer overhead, decoding throughput, grouping, the dataset audit."""
