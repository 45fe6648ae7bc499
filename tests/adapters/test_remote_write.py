"""Remote write: the encoder decoded back, retries and refusals, and the config section's errors.

Faults a real receiver cannot be made to produce on cue (a 503 or a 429 followed by a 204) use
httpx.MockTransport; a refused connection is a real closed port. The real Prometheus receiving the
pushes is in tests/app/test_remote_write_e2e.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from smartmetrics.adapters.exporter import BandCollector, Snapshot
from smartmetrics.adapters.remote_write import (
    HEADERS,
    RemoteWriter,
    render_write_requests,
    snapshot_series,
    write_request_class,
)
from smartmetrics.app.promlocal import free_port
from smartmetrics.config import ConfigError, RemoteWrite, parse_config, render_config
from smartmetrics.engine.state import BaselineState, SeriesBand

T0 = 1_700_000_000
MINIMAL = {"sources": {"prom": {"url": "http://localhost:9090"}}, "baselines": {"qps": {"expr": "up"}}}


def parse_body(body: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]:
    """(labels in wire order, samples) per time series of one compressed `WriteRequest`."""
    request = write_request_class()()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [([(lb.name, lb.value) for lb in ts.labels], [(s.value, s.timestamp) for s in ts.samples])
            for ts in request.timeseries]


def snapshot(n: int = 2, stuck_after: float | None = None) -> Snapshot:
    bands = []
    for i in range(n):
        y = 10.0 * (i + 1) + np.arange(4, dtype=float)
        meta = {"training": {"stuck_after": stuck_after}} if stuck_after else {}
        bands.append(SeriesBand({"zone": "eu", "instance": f"i{i}"}, T0, 60, y, y - 1, y + 2, meta=meta))
    return Snapshot({"qps": BaselineState("qps", T0, tuple(bands))})


# --- encoder ----------------------------------------------------------------------------------


def test_encoded_requests_decode_to_sorted_labels_names_values_and_millisecond_timestamps() -> None:
    series = [({"zone": "eu", "baseline": "qps", "instance": "a", "Up": "x", "__a": "y"},
               [("smartmetrics_yhat", 1.5)]),
              ({"baseline": "qps", "__name__": "dropped"}, [("smartmetrics_yhat_upper", float("inf"))])]
    [(body, count)] = render_write_requests(series, 1_700_000_000_123, batch_size=10)
    assert count == 2
    first, second = parse_body(body)
    assert [name for name, _ in first[0]] == ["Up", "__a", "__name__", "baseline", "instance", "zone"]
    assert dict(first[0]) == {"__name__": "smartmetrics_yhat", "baseline": "qps", "instance": "a",
                              "zone": "eu", "Up": "x", "__a": "y"}
    assert second[0] == [("__name__", "smartmetrics_yhat_upper"), ("baseline", "qps")]
    assert (first[1], second[1]) == ([(1.5, 1_700_000_000_123)], [(float("inf"), 1_700_000_000_123)])


def test_batches_hold_at_most_batch_size_samples_in_order() -> None:
    series = [({"i": str(i)}, [("a", 2.0 * i), ("b", 2.0 * i + 1)]) for i in range(4)]  # 8 samples
    bodies = render_write_requests(series, 1000, batch_size=3)
    assert [count for _, count in bodies] == [3, 3, 2]
    assert [len(parse_body(body)) for body, _ in bodies] == [3, 3, 2]
    decoded = [ts for body, _ in bodies for ts in parse_body(body)]  # one metric of a series may go later
    assert [ts[1] for ts in decoded] == [[(float(i), 1000)] for i in range(8)]
    assert [dict(ts[0])["__name__"] for ts in decoded] == ["a", "b"] * 4
    assert render_write_requests([], 1000, batch_size=3) == []
    with pytest.raises(ValueError, match="batch_size"):
        render_write_requests(series, 1000, batch_size=0)


def pushed_as_scraped(snap: Snapshot, now: float) -> set[tuple[str, frozenset, float]]:
    """The (name, labels, value) samples remote write pushes at `now`, asserted equal to a scrape's."""
    registry = CollectorRegistry()
    registry.register(BandCollector(lambda: snap, clock=lambda: now))
    scraped = {(s.name, frozenset(s.labels.items()), s.value) for m in registry.collect() for s in m.samples}
    pushed = {(name, frozenset(labels.items()), value)
              for labels, values in snapshot_series(snap, now) for name, value in values}
    assert pushed == scraped
    return pushed


def test_snapshot_samples_are_the_series_metrics_exposes() -> None:
    snap, now = snapshot(stuck_after=1800), T0 + 90
    pushed = pushed_as_scraped(snap, now)
    assert {name for name, *_ in pushed} == {"smartmetrics_yhat", "smartmetrics_yhat_lower",
                                             "smartmetrics_yhat_upper", "smartmetrics_stuck_after_seconds"}
    assert list(snapshot_series(snap, T0 + 3600)) == []  # the forecast ran out: nothing is pushed


# --- the writer -------------------------------------------------------------------------------


def writer(handler: Callable[[httpx.Request], httpx.Response] | None, **options: object) -> RemoteWriter:
    config = RemoteWrite.model_validate({"url": "http://receiver.test/api/v1/write", **options})
    transport = httpx.MockTransport(handler) if handler else None
    return RemoteWriter(config, transport, backoff=0.001, max_backoff=0.01, rng=random.Random(1))


def test_requests_carry_the_protocol_headers_auth_and_tenant() -> None:
    seen: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    tenant = writer(receive, headers={"X-Scope-OrgID": "team-a"}, bearer_token="tok")
    result = tenant.push(snapshot(), T0 + 90)
    assert (result.sent, result.failed, result.codes, result.error) == (6, 0, {"204": 1}, None)
    request = seen[0]
    assert {k: request.headers[k] for k in HEADERS} == HEADERS
    assert request.headers["X-Scope-OrgID"] == "team-a" and request.headers["Authorization"] == "Bearer tok"
    assert request.method == "POST" and str(request.url) == "http://receiver.test/api/v1/write"
    assert {ts[1][0][1] for ts in parse_body(request.content)} == {(T0 + 90) * 1000}


def test_5xx_and_429_are_retried_until_the_receiver_takes_the_samples() -> None:
    answers = iter([httpx.Response(503, text="busy"), httpx.Response(429, headers={"Retry-After": "0"}),
                    httpx.Response(204)])
    result = writer(lambda request: next(answers), retries=3).push(snapshot(), T0 + 90)
    assert (result.sent, result.failed, result.error) == (6, 0, None)
    assert result.codes == {"503": 1, "429": 1, "204": 1}


def test_a_4xx_is_not_retried_its_samples_fail_with_the_receivers_message_and_other_batches_go() -> None:
    calls = []

    def receive(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, text="out of order sample") if len(calls) == 1 else httpx.Response(204)

    result = writer(receive, batch_size=4, retries=3).push(snapshot(), T0 + 90)  # 6 samples: 4 and 2
    assert (result.sent, result.failed, len(calls)) == (2, 4, 2)
    assert result.codes == {"400": 1, "204": 1}
    assert "HTTP 400" in result.error and "out of order sample" in result.error


def test_an_unreachable_receiver_fails_the_push_after_its_retries_without_raising() -> None:
    port = free_port()  # nothing listens there
    config = RemoteWrite(url=f"http://127.0.0.1:{port}/api/v1/write", retries=2, batch_size=2)
    result = RemoteWriter(config, backoff=0.001, max_backoff=0.01).push(snapshot(), T0 + 90)
    assert (result.sent, result.failed) == (0, 6)
    assert result.codes == {"error": 3}  # the first batch's three attempts; the rest were not tried
    assert "failed after 3 attempts" in result.error and f"127.0.0.1:{port}" in result.error


def test_a_stop_ends_the_backoff_at_once() -> None:
    stop = threading.Event()
    config = RemoteWrite(url="http://receiver.test/w", retries=10)
    slow = RemoteWriter(config, httpx.MockTransport(lambda request: httpx.Response(503)), stop=stop,
                        backoff=30.0, max_backoff=30.0)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    result = slow.push(snapshot(), T0 + 90)
    assert time.monotonic() - started < 2.0
    assert result.failed == 6 and "abandoned on stop" in result.error


# --- config -----------------------------------------------------------------------------------


def problems_of(export: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "export": export})
    return info.value.problems


def test_no_export_section_means_no_push_and_defaults_are_sensible() -> None:
    assert parse_config(MINIMAL).export is None
    export = {"remote_write": {"url": "http://p:9090/api/v1/write"}}
    rw = parse_config({**MINIMAL, "export": export}).export.remote_write
    assert (rw.interval, rw.batch_size, rw.retries, rw.timeout) == (30.0, 5000, 3, 30.0)


@pytest.mark.parametrize(("remote_write", "problem"), [
    ({"url": "p:9090"}, 'export.remote_write.url: url "p:9090" must start with http:// or https://'),
    ({"url": "http://p", "intervall": "1m"}, "export.remote_write.intervall: unknown key"),
    ({"url": "http://p", "interval": "0s"}, "export.remote_write.interval: interval must be at least 1s"),
    ({"url": "http://p", "batch_size": 0}, "export.remote_write.batch_size: Input should be greater than"),
    ({"url": "http://p", "timeout": "5x"}, "export.remote_write.timeout: invalid duration"),
    ({"url": "http://p", "tls": {"ca_file": "/nonexistent/ca.pem"}},
     "export.remote_write.tls: ca_file '/nonexistent/ca.pem' does not exist"),
    ({"url": "http://p", "bearer_token": "t", "basic_auth": {"username": "u", "password": "p"}},
     "export.remote_write: use basic_auth or a bearer token, not both"),
    ({}, "export.remote_write.url: required"),
])
def test_config_errors_name_the_field(remote_write: dict, problem: str) -> None:
    problems = problems_of({"remote_write": remote_write})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_unknown_export_keys_are_rejected() -> None:
    assert problems_of({"remote_read": {}}) == ["export.remote_read: unknown key"]


def test_render_redacts_the_receivers_secrets() -> None:
    remote_write = {"url": "https://u:s3cret@mimir.test/api/v1/push", "headers": {"X-Scope-OrgID": "team-a"},
                    "basic_auth": {"username": "u", "password": "hunter2"}}
    text = render_config(parse_config({**MINIMAL, "export": {"remote_write": remote_write}}))
    assert "hunter2" not in text and "s3cret" not in text and "team-a" not in text
    assert "https://u:<redacted>@mimir.test/api/v1/push" in text and "X-Scope-OrgID: <redacted>" in text


def test_the_commented_example_in_configs_is_valid_once_uncommented() -> None:
    text = (Path(__file__).parents[2] / "configs" / "example.yaml").read_text()
    block = text[text.index("# export:"):].splitlines()
    uncommented = "\n".join(line[2:] for line in block if not line.startswith("#     #"))
    data = {**yaml.safe_load(text), **yaml.safe_load(uncommented)}
    rw = parse_config(data).export.remote_write
    assert rw.url == "http://prometheus:9090/api/v1/write" and rw.batch_size == 5000


def test_a_history_is_split_into_requests_of_batch_size_in_time_order() -> None:
    from smartmetrics.adapters.remote_write import render_history_requests

    ts = T0 + 60 * np.arange(7)
    history = [("smartmetrics_yhat", {"job": "b", "baseline": "q"}, ts, np.arange(7.0)),
               ("smartmetrics_yhat_upper", {"job": "b", "baseline": "q"}, ts[:2], np.array([1.5, 2.5]))]
    bodies = list(render_history_requests(history, batch_size=3))
    assert [n for _, n in bodies] == [3, 3, 3]
    series = [ts_ for body, _ in bodies for ts_ in parse_body(body)]
    assert series[0][0] == [("__name__", "smartmetrics_yhat"), ("baseline", "q"), ("job", "b")]
    samples = [s for labels, ss in series if ("__name__", "smartmetrics_yhat") in labels for s in ss]
    assert samples == [(float(i), (T0 + 60 * i) * 1000) for i in range(7)]  # every sample once, in order
    assert [s for labels, ss in series if ("__name__", "smartmetrics_yhat_upper") in labels for s in ss] == [
        (1.5, T0 * 1000), (2.5, (T0 + 60) * 1000)]


def test_snapshot_samples_include_the_forecast_ahead_as_metrics_exposes() -> None:
    y = 10.0 + np.arange(121, dtype=float)
    long = SeriesBand({"zone": "eu"}, T0, 60, y, y - 1, y + 2)
    snap = Snapshot({"qps": BaselineState("qps", T0, (long,))}, ahead={"qps": (("15m", 900.0),)})
    now = T0 + 90
    pushed = pushed_as_scraped(snap, now)
    values = {(name, labels): value for name, labels, value in pushed}
    key = ("smartmetrics_yhat_upper_ahead", frozenset({"baseline": "qps", "zone": "eu", "ahead": "15m"}.items()))
    assert values[key] == pytest.approx(y[16] + 2 + 0.5)  # the upper edge 990 s after the table's start
