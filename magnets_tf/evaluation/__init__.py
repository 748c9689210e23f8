"""Evaluation: FLOPs accounting, quality metrics, benchmarks."""
