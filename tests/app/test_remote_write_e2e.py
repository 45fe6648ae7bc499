"""Remote write for real: the daemon pushes its stored bands to Debian's Prometheus started with
`--web.enable-remote-write-receiver`, and PromQL on that Prometheus returns them; the receiver's own
refusals (out of order, out of bounds) are counted, never retried; a stop is not held up."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.adapters.exporter import Snapshot
from smartmetrics.adapters.remote_write import PushResult, RemoteWriter
from smartmetrics.adapters.store import save_baseline
from smartmetrics.app.daemon import Daemon
from smartmetrics.app.export import RemoteWritePusher
from smartmetrics.app.promlocal import LocalPrometheus, free_port
from smartmetrics.app.selfmetrics import SelfMetrics
from smartmetrics.config import RemoteWrite, load_config
from smartmetrics.engine.series import align_down
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.settings import fit_fingerprint


@pytest.fixture(scope="module")
def receiver(prometheus_binaries: tuple[str, str]) -> Iterator[LocalPrometheus]:
    with LocalPrometheus(flags=["--web.enable-remote-write-receiver"]) as prom:
        yield prom


def instant(prom: LocalPrometheus, query: str) -> list[dict]:
    answer = httpx.get(prom.url + "/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def stored_bands(now: float) -> list[SeriesBand]:
    """Two series with an hour of band either side of `now`; one with a stuck-detection constant."""
    start, n = align_down(now - 3600, 60), 121
    bands = []
    for i, instance in enumerate(("a", "b")):
        y = 100.0 * (i + 1) + np.sin(np.arange(n) / 10)
        meta = {"training": {"stuck_after": 1800}} if i == 0 else {}
        labels = {"job": "api", "instance": instance}
        bands.append(SeriesBand(labels, start, 60, y, y - 5, y + 5 + i, meta=meta))
    return bands


@pytest.mark.prometheus
def test_the_daemon_pushes_its_bands_and_promql_on_the_receiver_returns_them(
        receiver: LocalPrometheus, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": "http://127.0.0.1:9"}},  # no retrain: the stored bands are served
        "baselines": {"rate": {"expr": "sm_rate", "step": "1m", "history": "1d"}},
        "schedule": {"jitter": "0s", "discover": "1h"},
        "store": {"path": str(tmp_path / "models")},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "export": {"remote_write": {"url": receiver.url + "/api/v1/write", "interval": "1s"}},
    }))
    now = time.time()
    baseline = load_config(config_file).baselines["rate"]
    state = BaselineState("rate", now, tuple(stored_bands(now)), {"fingerprint": fit_fingerprint(baseline)})
    save_baseline(tmp_path / "models", state)
    daemon = Daemon(str(config_file), workers=1)
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while len(found := instant(receiver, 'smartmetrics_yhat_upper{baseline="rate"}[1m]')) < 2:
            assert time.monotonic() < deadline, "the pushed bands never arrived"
            time.sleep(0.2)
        snapshot = Snapshot({"rate": state})
        for series in found:
            labels = series["metric"]
            assert labels.keys() == {"__name__", "baseline", "job", "instance"}
            assert labels["baseline"] == "rate"
            for stamp, value in series["values"]:  # every sample is the band at its own timestamp
                expected = {x["instance"]: upper for x, _, _, upper in snapshot.values_at(float(stamp))}
                assert float(value) == pytest.approx(expected[labels["instance"]], abs=1e-3)
        assert {s["metric"]["__name__"] for s in instant(receiver, '{baseline="rate"}')} == {
            "smartmetrics_yhat", "smartmetrics_yhat_lower", "smartmetrics_yhat_upper",
            "smartmetrics_stuck_after_seconds"}
        metrics = daemon.metrics.registry
        assert metrics.get_sample_value("smartmetrics_remote_write_samples_total") >= 7  # 2 x 3 + 1 per push
        assert metrics.get_sample_value("smartmetrics_remote_write_requests_total", {"code": "204"}) >= 1
        assert metrics.get_sample_value("smartmetrics_remote_write_last_success_timestamp_seconds") >= now
    finally:
        stopped = time.monotonic()
        daemon.stop()
        assert time.monotonic() - stopped < 3.0


@pytest.mark.prometheus
def test_samples_the_receiver_refuses_are_counted_failed_and_not_retried(receiver: LocalPrometheus) -> None:
    now = time.time()
    snapshot = Snapshot({"old": BaselineState("old", now, tuple(stored_bands(now)))})
    rw = RemoteWriter(RemoteWrite(url=receiver.url + "/api/v1/write", retries=3))
    try:
        assert rw.push(snapshot, now).sent == 7
        late = rw.push(snapshot, now - 600)  # older than what the receiver already holds for these series
        assert (late.sent, late.failed, late.codes) == (0, 7, {"400": 1})
        assert "HTTP 400" in late.error and "out of order" in late.error
    finally:
        rw.close()


def test_a_push_is_counted_in_the_self_metrics() -> None:
    metrics = SelfMetrics()
    metrics.record_push(PushResult(sent=6, codes=Counter({"204": 2})), started=1000.0)
    refused = PushResult(sent=3, failed=3, codes=Counter({"204": 1, "400": 1}), error="refused")
    metrics.record_push(refused, started=1030.0)
    value = metrics.registry.get_sample_value
    assert value("smartmetrics_remote_write_samples_total") == 9
    assert value("smartmetrics_remote_write_samples_failed_total") == 3
    assert value("smartmetrics_remote_write_requests_total", {"code": "204"}) == 3
    assert value("smartmetrics_remote_write_last_success_timestamp_seconds") == 1000.0  # not the refused one


def test_a_stop_is_not_held_up_by_a_receiver_that_never_answers() -> None:
    """A real listener that takes the request and never answers: the stop returns within its second."""
    listener = socket.create_server(("127.0.0.1", 0))
    port, arrived = listener.getsockname()[1], threading.Event()

    def take() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        arrived.set()
        time.sleep(10)  # hold it open without an answer
        connection.close()

    threading.Thread(target=take, daemon=True).start()
    now = time.time()
    config = RemoteWrite(url=f"http://127.0.0.1:{port}/api/v1/write", timeout=60)
    snapshot = Snapshot({"x": BaselineState("x", now, tuple(stored_bands(now)))})
    pusher = RemoteWritePusher(config, lambda: snapshot, SelfMetrics(), time.time)
    pusher.start()
    try:
        assert arrived.wait(10), "the push never reached the listener"
        stopped = time.monotonic()
        pusher.stop()
        assert time.monotonic() - stopped < 2.0
    finally:
        listener.close()
