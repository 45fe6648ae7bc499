"""A real firing alert reaches the daemon: Prometheus (rule on a series we control, labelled with a
configured baseline) -> Debian's prometheus-alertmanager (group_wait 1s) -> the daemon's webhook
(basic auth), recorded with the band of its series; feedback on it over HTTP. And the shipped
Alertmanager snippet routes smartmetrics' alerts to the daemon."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.adapters.server import serve
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port
from smartmetrics.engine.series import align_down

ROOT = Path(__file__).parent.parent.parent
AUTH = ("alertmanager", "s3cret")


def test_the_shipped_snippet_routes_smartmetrics_alerts_to_the_daemon() -> None:
    config = yaml.safe_load((ROOT / "configs" / "alertmanager.yml").read_text())
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "smartmetrics"]
    assert route["matchers"] == ['baseline=~".+"'] and route["continue"] is True
    (receiver,) = [r for r in config["receivers"] if r["name"] == "smartmetrics"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://smartmetrics:9877/api/v1/alerts" and hook["send_resolved"] is True


def history(end: int) -> list[MetricSeries]:
    """Two days of a steady series at 100, then 20 minutes at 400 up to `end`: the excursion."""
    ts = np.arange(end - 2 * 86400, end + 1, 60, dtype=np.int64)
    values = 100 + np.random.default_rng(5).normal(0, 2, len(ts))
    values[ts > end - 1200] = 400.0
    return [MetricSeries("sm_e2e", {"job": "api", "instance": "a"}, ts, values)]


def write_files(root: Path, daemon_port: int) -> dict[str, Path]:
    rules = root / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "e2e", "interval": "1s", "rules": [{
        "alert": "SmartmetricsE2E", "expr": "sm_e2e > 150",
        "labels": {"baseline": "e2e", "severity": "warning"},
        "annotations": {"value": "{{ $value }}", "summary": "e2e is outside its expected range"},
    }]}]}))
    am = root / "alertmanager.yml"
    am.write_text(yaml.safe_dump({
        "route": {"receiver": "smartmetrics", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "smartmetrics", "webhook_configs": [{
            "url": f"http://127.0.0.1:{daemon_port}/api/v1/alerts", "send_resolved": True,
            "http_config": {"basic_auth": {"username": AUTH[0], "password": AUTH[1]}}}]}],
    }))
    return {"rules": rules, "am": am}


def write_daemon_config(root: Path, prom_url: str, port: int) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": prom_url}},
        "baselines": {"e2e": {"expr": "sm_e2e", "step": "5m", "history": "2d"}},
        "schedule": {"jitter": "0s", "discover": "1h"},
        "store": {"path": str(root / "models")},
        "server": {"listen": f"127.0.0.1:{port}", "basic_auth": {"username": AUTH[0], "password": AUTH[1]}},
    }))
    return path


def wait_for(check, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


@pytest.fixture
def alertmanager(tmp_path: Path, alertmanager_binary: str) -> Iterator[tuple[int, Path, Callable[[Path], None]]]:
    """Its port and log; started by the test (the daemon must be listening first), stopped here."""
    port, log = free_port(), tmp_path / "alertmanager.log"
    procs: list[subprocess.Popen] = []

    def start(config: Path) -> None:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [alertmanager_binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    yield port, log, start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.prometheus
def test_a_real_alert_reaches_the_daemon_through_alertmanager_with_its_band(
    tmp_path: Path, prometheus_binaries: tuple[str, str], alertmanager
) -> None:
    from smartmetrics.app.daemon import Daemon

    am_port, am_log, start_alertmanager = alertmanager
    daemon_port = free_port()
    files = write_files(tmp_path, daemon_port)
    end = align_down(time.time(), 60)
    flags = ["--rules.alert.resend-delay=1s", "--query.lookback-delta=30m"]  # the excursion stays current
    with LocalPrometheus(history(end), rule_files=[files["rules"]], scrape_interval="1s", flags=flags,
                         alertmanagers=[f"127.0.0.1:{am_port}"]) as prom:
        daemon = Daemon(str(write_daemon_config(tmp_path, prom.url, daemon_port)), workers=1)
        daemon._pool.close()
        daemon._pool = None  # one series: fitted inline
        daemon.load()
        (outcome,) = daemon.retrain()
        assert outcome.fitted == 1, outcome
        server = serve(daemon, daemon.config.server)
        try:
            start_alertmanager(files["am"])
            records = wait_for(lambda: daemon.alerts.records, 45, "the alert to reach the daemon", am_log)
            base = f"http://127.0.0.1:{daemon_port}"
            listed = httpx.get(f"{base}/api/v1/alerts", params={"baseline": "e2e", "since": "1h"}, auth=AUTH)
            feedback = httpx.post(f"{base}/api/v1/alerts/{records[0].id}/feedback", json={"feedback": "noise"},
                                  auth=AUTH)
            refused = httpx.post(f"{base}/api/v1/alerts", content=b"{}")
        finally:
            server.stop()
    (record,) = records
    band = daemon.states["e2e"].series[0]
    assert record.baseline == "e2e" and record.labels["instance"] == "a" and record.series == band.key
    assert record.value == 400.0 and record.side == "above"
    assert None not in (record.yhat, record.lower, record.upper) and record.upper < 400
    assert (record.yhat, record.lower, record.upper) == pytest.approx(band.at(record.starts_at))
    assert listed.status_code == 200 and [a["id"] for a in listed.json()["data"]] == [record.id]
    assert feedback.status_code == 200 and daemon.alerts.records[0].feedback == "noise"
    assert refused.status_code == 401
    received = daemon.metrics.registry.get_sample_value("smartmetrics_alerts_recorded_total", {"baseline": "e2e"})
    assert received == 1
