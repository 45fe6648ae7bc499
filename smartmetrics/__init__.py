"""smartmetrics: learned anomaly baselines for Prometheus and Grafana."""

__version__ = "0.1.0"
