"""`smartmetrics.instrument`: the standard inference metrics of a Python model service, checked on the
exposition text a Prometheus would scrape."""

from __future__ import annotations

import asyncio
import importlib
import sys
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from smartmetrics.app.promlocal import free_port

LABELS = {"model_name": "resnet", "model_version": "v2", "tenant_id": "acme", "framework": "torch"}


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    """Every sample of the registry's exposition text, keyed by name and labels."""
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return samples(registry).get((name, frozenset({**LABELS, **labels}.items())))


@pytest.fixture
def metrics():
    from smartmetrics.instrument import InferenceMetrics

    return InferenceMetrics(model_name="resnet", model_version="v2", framework="torch")


def test_import_registers_nothing_globally() -> None:
    before = set(REGISTRY._names_to_collectors)
    sys.modules.pop("smartmetrics.instrument", None)
    module = importlib.import_module("smartmetrics.instrument")
    module.InferenceMetrics(model_name="m")
    assert set(REGISTRY._names_to_collectors) == before


def test_decorated_function_ok_and_raising(metrics) -> None:
    @metrics.track(tenant_id="acme")
    def predict(x: float) -> dict[str, float]:
        if x < 0:
            raise ValueError("negative")
        return {"label": 1, "confidence": x}

    assert predict(0.9) == {"label": 1, "confidence": 0.9}
    assert predict(0.3)["confidence"] == 0.3
    with pytest.raises(ValueError):
        predict(-1)
    reg = metrics.registry
    assert value(reg, "inference_requests_total", outcome="ok") == 2
    assert value(reg, "inference_requests_total", outcome="error") == 1
    assert value(reg, "inference_request_duration_seconds_count") == 3
    assert value(reg, "inference_prediction_confidence_count") == 2
    assert value(reg, "inference_prediction_confidence_sum") == pytest.approx(1.2)
    assert value(reg, "inference_prediction_confidence_bucket", le="0.5") == 1
    assert value(reg, "inference_requests_in_flight") == 0
    assert predict.__name__ == "predict"


def test_async_function_and_in_flight(metrics) -> None:
    seen: list[float | None] = []

    @dataclass
    class Result:
        confidence: float

    @metrics.track(tenant_id="acme")
    async def predict(x: float) -> Result:
        seen.append(value(metrics.registry, "inference_requests_in_flight"))
        await asyncio.sleep(0)
        if x < 0:
            raise RuntimeError("boom")
        return Result(x)

    async def main() -> None:
        assert (await predict(0.75)).confidence == 0.75
        with pytest.raises(RuntimeError):
            await predict(-1)

    asyncio.run(main())
    reg = metrics.registry
    assert seen == [1, 1]
    assert value(reg, "inference_requests_in_flight") == 0
    assert value(reg, "inference_requests_total", outcome="ok") == 1
    assert value(reg, "inference_requests_total", outcome="error") == 1
    assert value(reg, "inference_prediction_confidence_sum") == 0.75


def test_confidence_callable_tenant_callable_and_no_confidence(metrics) -> None:
    @metrics.track(tenant_id=lambda request: request["tenant"], confidence=lambda out: max(out))
    def classify(request: dict) -> list[float]:
        return [0.1, 0.8, 0.1]

    @metrics.track(tenant_id="acme")
    def embed(text: str) -> list[float]:
        return [0.0, 1.0]

    classify({"tenant": "globex"})
    embed("hello")
    reg = metrics.registry
    assert value(reg, "inference_prediction_confidence_sum", tenant_id="globex") == 0.8
    assert value(reg, "inference_requests_total", outcome="ok", tenant_id="acme") == 1
    assert value(reg, "inference_prediction_confidence_count", tenant_id="acme") is None


def test_context_manager(metrics) -> None:
    with metrics.request(tenant_id="acme") as req:
        req.observe_confidence(0.95)
    with pytest.raises(KeyError), metrics.request(tenant_id="acme"):
        raise KeyError("x")
    reg = metrics.registry
    assert value(reg, "inference_requests_total", outcome="ok") == 1
    assert value(reg, "inference_requests_total", outcome="error") == 1
    assert value(reg, "inference_prediction_confidence_count") == 1


def test_given_registry_and_bad_confidence_ignored() -> None:
    from smartmetrics.instrument import InferenceMetrics

    registry = CollectorRegistry()
    metrics = InferenceMetrics(model_name="resnet", model_version="v2", framework="torch", registry=registry)
    assert metrics.registry is registry

    @metrics.track(tenant_id="acme")
    def predict() -> dict:
        return {"confidence": "high"}  # not a number: counted, not observed

    predict()
    assert value(registry, "inference_requests_total", outcome="ok") == 1
    assert value(registry, "inference_prediction_confidence_count") is None


def test_http_server_started_once_and_scrapeable(metrics) -> None:
    from smartmetrics.instrument import start_http_server

    port = free_port()
    first = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        assert start_http_server(port, addr="127.0.0.1", registry=metrics.registry) is first
        assert metrics.serve(port, addr="127.0.0.1") is first
        with metrics.request(tenant_id="acme"):
            pass
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "inference_requests_total{" in text and 'model_name="resnet"' in text
        with pytest.raises(ValueError, match="already serves another registry"):
            start_http_server(port, addr="127.0.0.1", registry=CollectorRegistry())
    finally:
        first.shutdown()
