"""Benchmarks: each module is a command (`python -m smartmetrics.benchmarks.NAME`) that prints its
figures beside the peers it is compared with, measured in the same run. Results live in BENCHMARKS.md."""
