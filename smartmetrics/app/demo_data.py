"""Synthetic metrics of an AI inference service, as Prometheus would have scraped them, for the demo.

The names and labels are those of `smartmetrics.instrument` (what `smartmetrics init` recognises):
per model, version and tenant, request counters by outcome (ok, error) with daily and weekly rhythm
and tenant scales 1000x apart, latency and prediction-confidence histograms; and GPU utilisation per
GPU. The last day carries a few incidents (listed in `DEMO_INCIDENTS`) for the bands to catch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from smartmetrics.app.promlocal import MetricSeries
from smartmetrics.instrument import CONFIDENCE, DURATION, REQUESTS

MODELS = {"llama-3-8b": ("v1", "v2"), "mistral-7b": ("v3",), "whisper-large": ("v1",)}
TENANTS = {"acme": 40.0, "globex": 4.0, "initech": 0.04}  # requests/s at peak: 1000x apart
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
GPUS = 4
FRAMEWORK = {"llama-3-8b": "vllm", "mistral-7b": "vllm", "whisper-large": "torch"}


@dataclass(frozen=True)
class Incident:
    """An anomaly injected into the last day: what, where, and when (hours before the end)."""

    what: str
    labels: dict[str, str]
    start_h: float
    end_h: float


DEMO_INCIDENTS = (
    Incident("traffic drop (tenant outage)", {"model_name": "llama-3-8b", "tenant_id": "acme"}, 9.0, 7.5),
    Incident("latency spike", {"model_name": "mistral-7b"}, 5.0, 4.0),
    Incident("error burst", {"model_name": "whisper-large"}, 3.0, 2.5),
    Incident("GPU stuck at 100%", {"gpu": "2"}, 14.0, 12.0),
)
LIVE_INCIDENT = Incident("error burst (live)", {"model_name": "whisper-large"}, -2 / 60, -42 / 60)
"""Happens while the demo runs: from 2 to 42 minutes after the end of the backfilled history."""


def _window(ts: np.ndarray, end: int, incident: Incident) -> np.ndarray:
    return (ts >= end - incident.start_h * 3600) & (ts < end - incident.end_h * 3600)


def _incident(end: int, ts: np.ndarray, what: str, **labels: str) -> np.ndarray:
    """Mask of the points hit by the incident of kind `what` matching these labels (all False if none)."""
    mask = np.zeros(len(ts), dtype=bool)
    for incident in (*DEMO_INCIDENTS, LIVE_INCIDENT):
        if incident.what.startswith(what) and all(labels.get(k) == v for k, v in incident.labels.items()):
            mask |= _window(ts, end, incident)
    return mask


def traffic_shape(ts: np.ndarray) -> np.ndarray:
    """Relative load: a daytime peak (UTC), a quiet weekend, never zero."""
    hour = (ts % 86400) / 3600
    day = 0.25 + 0.75 * np.exp(-0.5 * ((hour - 14) / 4.0) ** 2)
    weekday = ((ts // 86400) + 3) % 7  # Monday = 0; 1970-01-01 was a Thursday (3)
    return day * np.where(weekday >= 5, 0.6, 1.0)


def _counter(rng: np.random.Generator, rate: np.ndarray, step: int) -> np.ndarray:
    return np.cumsum(rng.poisson(np.maximum(rate, 0) * step)).astype(float)


def _histogram(name: str, labels: dict[str, str], ts: np.ndarray, counts: np.ndarray, buckets: tuple[float, ...],
               shares: np.ndarray) -> list[MetricSeries]:
    """Cumulative `_bucket` counters (plus `+Inf`) from per-step counts and per-bucket shares: each
    step's requests fall into the buckets by that step's shares, so a bucket only ever grows."""
    out = []
    for i, le in enumerate((*buckets, float("inf"))):
        share = np.clip(shares[:, i] if shares.ndim == 2 else shares[i], 0, 1)
        le_text = "+Inf" if np.isinf(le) else repr(le)
        out.append(MetricSeries(f"{name}_bucket", {**labels, "le": le_text}, ts,
                                np.floor(np.cumsum(counts * share)), kind="counter"))
    return out


def _latency_shares(slow: np.ndarray, base: float) -> np.ndarray:
    """Share of requests at or below each bucket: log-normal latency, `slow` multiplying it."""
    from scipy.special import ndtr

    mu = np.log(base * slow)[:, None]
    edges = np.log(np.array(LATENCY_BUCKETS))[None, :]
    return np.concatenate([ndtr((edges - mu) / 0.5), np.ones((len(slow), 1))], axis=1)


def generate_demo_metrics(end: int, days: int = 14, step: int = 60, seed: int = 7, ahead: int = 0,
                          extra: dict[str, str] | None = None) -> list[MetricSeries]:
    """Every demo series over `days` ending at `end` (and `ahead` seconds on, for the live part),
    sampled every `step` seconds, with `extra` labels on every series (e.g. the job and instance a
    live scrape of them will carry)."""
    rng = np.random.default_rng(seed)
    ts = np.arange(end - days * 86400, end + ahead + 1, step, dtype=np.int64)
    shape = traffic_shape(ts)
    out: list[MetricSeries] = []
    for model, versions in MODELS.items():
        slow = 1 + 0.3 * shape + np.where(_incident(end, ts, "latency", model_name=model), 4.0, 0.0)
        base = {"llama-3-8b": 0.35, "mistral-7b": 0.25, "whisper-large": 0.8}[model]
        latency, confidence = _latency_shares(slow, base), np.array([0.02, 0.06, 0.12, 0.35, 0.6, 0.9, 1.0])
        for version in versions:
            for tenant, peak in TENANTS.items():
                labels = {"model_name": model, "model_version": version, "tenant_id": tenant,
                          "framework": FRAMEWORK[model]}
                rate = peak * shape / len(versions) * rng.uniform(0.8, 1.2)
                rate = np.where(_incident(end, ts, "traffic", model_name=model, tenant_id=tenant), rate * 0.15, rate)
                share = np.where(_incident(end, ts, "error", model_name=model), 0.08, 0.002)
                ok, errors = _counter(rng, rate * (1 - share), step), _counter(rng, rate * share, step)
                for outcome, values in (("ok", ok), ("error", errors)):
                    out.append(MetricSeries(REQUESTS, {**labels, "outcome": outcome}, ts, values, kind="counter"))
                served = np.diff(ok + errors, prepend=0)
                out += _histogram(DURATION, labels, ts, served, LATENCY_BUCKETS, latency)
                out += _histogram(CONFIDENCE, labels, ts, served, CONFIDENCE_BUCKETS, confidence)
    for gpu in range(GPUS):
        util = np.clip(0.15 + 0.75 * shape + rng.normal(0, 0.04, len(ts)), 0, 1)
        util = np.where(_incident(end, ts, "GPU", gpu=str(gpu)), 1.0, util)
        out.append(MetricSeries("gpu_utilization_ratio", {"gpu": str(gpu), "node": "gpu-node-1"}, ts, util))
    if extra:
        out = [dataclasses.replace(m, labels={**m.labels, **extra}) for m in out]
    return out


def until(series: list[MetricSeries], end: int) -> list[MetricSeries]:
    """The part of each series at or before `end` (what is backfilled; the rest is served live)."""
    return [dataclasses.replace(m, timestamps=m.timestamps[m.timestamps <= end], values=m.values[m.timestamps <= end])
            for m in series]
