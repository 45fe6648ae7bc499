"""The standard inference metrics for a Python model service, exposed with prometheus-client.

    from smartmetrics.instrument import InferenceMetrics

    metrics = InferenceMetrics(model_name="resnet", model_version="v2", framework="torch")

    @metrics.track(tenant_id=lambda request: request.tenant)      # sync or async
    def predict(request):
        return {"label": "cat", "confidence": 0.93}

    metrics.serve(8000)                                            # /metrics, started once

Metrics, each labelled `model_name`, `model_version`, `tenant_id`, `framework`:

    inference_request_duration_seconds_bucket{...,le="0.1"}   latency histogram
    inference_requests_total{...,outcome="ok"|"error"}        requests by outcome (an exception is an error)
    inference_prediction_confidence_bucket{...,le="0.9"}      confidence of each prediction
    inference_requests_in_flight{...}                         requests being served now

`smartmetrics init` recognises these names and proposes their baselines (QPS, error ratio, p95 and
p99 latency, median confidence per model and tenant). Importing this module registers nothing: each
`InferenceMetrics` has its own `CollectorRegistry` unless given one, and no server starts until asked.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _prometheus_http_server

__all__ = ["InferenceMetrics", "Request", "Exporter", "start_http_server", "read_confidence",
           "DURATION", "REQUESTS", "CONFIDENCE", "IN_FLIGHT", "LABELS"]

DURATION = "inference_request_duration_seconds"
REQUESTS = "inference_requests_total"
CONFIDENCE = "inference_prediction_confidence"
IN_FLIGHT = "inference_requests_in_flight"
LABELS = ("model_name", "model_version", "tenant_id", "framework")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

F = TypeVar("F", bound=Callable[..., Any])
Tenant = str | Callable[..., str]
"""A tenant id, or a function of the decorated function's arguments that returns it."""


def read_confidence(result: Any, confidence: Callable[[Any], Any] | None = None) -> float | None:
    """The prediction confidence of `result`: `confidence(result)` if given, else its `confidence`
    key or attribute; None when there is none or it is not a finite number.

    >>> read_confidence({"confidence": 0.9}), read_confidence([1, 2]), read_confidence(3, lambda r: r / 4)
    (0.9, None, 0.75)
    """
    if confidence is not None:
        found = confidence(result)
    elif isinstance(result, dict):
        found = result.get("confidence")
    else:
        found = getattr(result, "confidence", None)
    if isinstance(found, Real) and not isinstance(found, bool) and math.isfinite(found):
        return float(found)
    return None


class Request:
    """One request being measured; `observe_confidence` records its prediction's confidence."""

    def __init__(self, metrics: InferenceMetrics, labels: dict[str, str]):
        self._metrics, self._labels = metrics, labels

    def observe_confidence(self, value: float) -> None:
        self._metrics.confidence.labels(**self._labels).observe(value)

    def observe_result(self, result: Any, confidence: Callable[[Any], Any] | None = None) -> None:
        """Record the confidence read from `result` (see `read_confidence`), if it has one."""
        found = read_confidence(result, confidence)
        if found is not None:
            self.observe_confidence(found)


class InferenceMetrics:
    """The four inference metrics of one model version, in `registry` (a new one unless given)."""

    def __init__(self, model_name: str, model_version: str = "", framework: str = "", *,
                 registry: CollectorRegistry | None = None,
                 latency_buckets: tuple[float, ...] = LATENCY_BUCKETS,
                 confidence_buckets: tuple[float, ...] = CONFIDENCE_BUCKETS):
        self.model_name, self.model_version, self.framework = model_name, model_version, framework
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        reg = self.registry
        self.duration = Histogram(DURATION, "Time to serve one inference request.", LABELS,
                                  registry=reg, buckets=latency_buckets)
        self.requests = Counter(REQUESTS, "Inference requests served, by outcome (ok or error).",
                                (*LABELS, "outcome"), registry=reg)
        self.confidence = Histogram(CONFIDENCE, "Confidence of each prediction (0 to 1).", LABELS,
                                    registry=reg, buckets=confidence_buckets)
        self.in_flight = Gauge(IN_FLIGHT, "Inference requests being served now.", LABELS, registry=reg)

    def labels(self, tenant_id: str = "") -> dict[str, str]:
        return {"model_name": self.model_name, "model_version": self.model_version,
                "tenant_id": tenant_id, "framework": self.framework}

    @contextmanager
    def request(self, tenant_id: str = "") -> Iterator[Request]:
        """Measure the block as one request: in flight while it runs, its latency, ok or error (an
        exception escaping the block; re-raised)."""
        labels = self.labels(tenant_id)
        gauge = self.in_flight.labels(**labels)
        gauge.inc()
        t0 = time.perf_counter()
        outcome = "error"
        try:
            yield Request(self, labels)
            outcome = "ok"
        finally:
            self.duration.labels(**labels).observe(time.perf_counter() - t0)
            self.requests.labels(**labels, outcome=outcome).inc()
            gauge.dec()

    def track(self, tenant_id: Tenant = "", confidence: Callable[[Any], Any] | None = None) -> Callable[[F], F]:
        """Decorator: measure every call of a function or coroutine function as one request, and the
        confidence of what it returns (`read_confidence`)."""

        def tenant_of(args: tuple, kwargs: dict) -> str:
            return tenant_id(*args, **kwargs) if callable(tenant_id) else tenant_id

        def decorate(func: F) -> F:
            if inspect.iscoroutinefunction(func):
                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with self.request(tenant_of(args, kwargs)) as req:
                        result = await func(*args, **kwargs)
                        req.observe_result(result, confidence)
                        return result
                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.request(tenant_of(args, kwargs)) as req:
                    result = func(*args, **kwargs)
                    req.observe_result(result, confidence)
                    return result
            return wrapper  # type: ignore[return-value]

        return decorate

    def serve(self, port: int, addr: str = "0.0.0.0") -> Exporter:
        """Serve this registry on http://addr:port/metrics (once; later calls return the same server)."""
        return start_http_server(port, addr, self.registry)


@dataclass
class Exporter:
    """A running /metrics server: its address, registry and thread."""

    addr: str
    port: int
    registry: CollectorRegistry
    server: Any
    thread: threading.Thread

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with _lock:
            _servers.pop((self.addr, self.port), None)


_lock = threading.Lock()
_servers: dict[tuple[str, int], Exporter] = {}


def start_http_server(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> Exporter:
    """prometheus-client's exporter, started once per address: a second call for the same address and
    registry returns the running one; for another registry it is a ValueError."""
    if registry is None:
        raise ValueError("give the registry to serve (InferenceMetrics.registry); the global one is not used")
    with _lock:
        running = _servers.get((addr, port))
        if running is not None:
            if running.registry is not registry:
                raise ValueError(f"{addr}:{port} already serves another registry")
            return running
        server, thread = _prometheus_http_server(port, addr, registry)
        _servers[(addr, port)] = exporter = Exporter(addr, port, registry, server, thread)
        return exporter
