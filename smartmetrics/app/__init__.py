"""The application: the daemon and its schedule, one baseline's retrain (fetch, fit in a worker pool,
store), the CLI and its commands, the demo, and the local Prometheus the demo and the tests start.

It sits on top: it may import every other subpackage, and none imports it (the benchmarks aside).
"""
