"""A real firing alert reaches the daemon: Prometheus (rule on a series we control, labelled with a
configured baseline) -> Debian's prometheus-alertmanager (group_wait 1s) -> the daemon's webhook
(basic auth), recorded with the band of its series; feedback on it over HTTP. And the shipped
Alertmanager snippet routes smartmetrics' alerts to the daemon."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.adapters.remote_write import HEADERS, render_history_requests
from smartmetrics.adapters.server import HTTPServer, serve
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port, start_on_free_port
from smartmetrics.engine.alerts import WIDEN_MAX, feedback_factors
from smartmetrics.engine.firing import AlertRules, anomaly_condition, firing_and_onsets
from smartmetrics.engine.series import align_down
from smartmetrics.engine.state import SeriesBand

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
def alertmanager(tmp_path: Path, alertmanager_binary: str) -> Iterator[tuple[int, Path, Callable[[Path], int]]]:
    """Its port and log; started by the test (the daemon must be listening first), stopped here. `start`
    returns the port it listens on: another than the one given if that was taken before it bound it."""
    port, log = free_port(), tmp_path / "alertmanager.log"
    procs: list[subprocess.Popen] = []

    def launch(config: Path, at: int) -> subprocess.Popen:
        with log.open("ab") as out:
            procs.append(subprocess.Popen(
                [alertmanager_binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                 f"--web.listen-address=127.0.0.1:{at}", "--cluster.listen-address=", "--log.level=debug"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return procs[-1]

    def start(config: Path) -> int:
        return start_on_free_port(lambda at: launch(config, at), log, "Listening on", port=port, timeout=30)[1]

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
        server, daemon_port = serve_daemon(daemon)
        try:
            files = write_files(tmp_path, daemon_port)  # the webhook to the port the daemon listens on
            alert_to(prom, am_port, start_alertmanager(files["am"]))
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


def serve_daemon(daemon) -> tuple[HTTPServer, int]:
    """The daemon's HTTP server, on its config's port or, if that was taken before it bound it,
    on another; with the port it listens on."""
    server = daemon.config.server
    for _ in range(2):
        try:
            running = serve(daemon, server)
            return running, running.address[1]
        except OSError as exc:
            if "in use" not in str(exc):
                raise
        server = server.model_copy(update={"listen": f"127.0.0.1:{free_port()}"})
    running = serve(daemon, server)
    return running, running.address[1]


def alert_to(prom: LocalPrometheus, am_port: int, listening: int) -> None:
    """Point Prometheus at the Alertmanager's port if it listens on another than first configured."""
    if listening != am_port:
        prom.retarget(alertmanagers=[f"127.0.0.1:{listening}"])


def push_samples(url: str, values: list[tuple[int, float]]) -> None:
    """`sm_e2e{job="api",instance="a"}` samples (Unix seconds, value) by remote write: the injected excursion."""
    ts, vs = np.array([t for t, _ in values]), np.array([v for _, v in values])
    for body, _ in render_history_requests([("sm_e2e", {"job": "api", "instance": "a"}, ts, vs)], 100):
        httpx.post(f"{url}/api/v1/write", content=body, headers=HEADERS, timeout=10).raise_for_status()


def replay_fires(band: SeriesBand, value: float, rules: AlertRules, points: int = 12) -> bool:
    """Whether the anomaly alert fires on `value` held for `points` steps of `band`'s table (the replay
    the generated rules are proven against, `smartmetrics.engine.firing`)."""
    grid = band.start + band.step * np.arange(points)
    yhat, lower, upper = (np.array(col) for col in zip(*(band.at(t) for t in grid)))
    condition = anomaly_condition(np.full(points, value), yhat, lower, upper, rules)
    firing, _ = firing_and_onsets(condition, rules.for_points(band.step), rules.keep_points(band.step))
    return bool(firing.any())


@pytest.mark.slow
@pytest.mark.prometheus
def test_noise_twice_widens_the_band_so_the_same_excursion_stays_quiet_and_a_larger_one_fires(
    tmp_path: Path, prometheus_binaries: tuple[str, str], alertmanager
) -> None:
    """Issue 26's target: an excursion just past the alert line fires twice (two firing periods of one
    series) through Prometheus and Alertmanager, on-call says `noise` to both, and after the next
    retrain the same excursion replays quiet against the widened band while a larger one still fires."""
    from smartmetrics.app.daemon import Daemon

    am_port, am_log, start_alertmanager = alertmanager
    daemon_port = free_port()
    end = align_down(time.time(), 60)
    ts = np.arange(end - 2 * 86400, end + 1, 60, dtype=np.int64)
    steady = [MetricSeries("sm_e2e", {"job": "api", "instance": "a"}, ts,
                           100 + np.random.default_rng(5).normal(0, 2, len(ts)))]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": []}))
    flags = ["--rules.alert.resend-delay=1s", "--query.lookback-delta=30m", "--web.enable-remote-write-receiver"]
    with LocalPrometheus(steady, rule_files=[rules_file], scrape_interval="1s", flags=flags,
                         alertmanagers=[f"127.0.0.1:{am_port}"]) as prom:
        daemon = Daemon(str(write_daemon_config(tmp_path, prom.url, daemon_port)), workers=1)
        daemon._pool.close()
        daemon._pool = None
        daemon.load()
        (outcome,) = daemon.retrain()
        assert outcome.fitted == 1, outcome
        rules = AlertRules.of_baseline(daemon.config.baselines["e2e"])
        yhat, _, upper = daemon.states["e2e"].series[0].at(time.time())
        line = yhat + rules.threshold * (upper - yhat)  # where the anomaly rule fires, at this hour
        excursion = yhat + 1.12 * (line - yhat)  # past the line, inside it once widened
        larger = yhat + (WIDEN_MAX + 0.5) * (line - yhat)  # beyond any widening feedback may give
        server, daemon_port = serve_daemon(daemon)
        base = f"http://127.0.0.1:{daemon_port}"
        try:
            # The stand-in for the generated anomaly rule: the same line, as a constant for this hour.
            files = write_files(tmp_path, daemon_port)
            rules_file.write_text(files["rules"].read_text().replace("sm_e2e > 150", f"sm_e2e > {line:.6f}"))
            prom.reload()
            alert_to(prom, am_port, start_alertmanager(files["am"]))
            for period in (1, 2):  # up, wait until recorded, back to normal, wait until resolved
                push_samples(prom.url, [(int(time.time()), excursion)])
                wait_for(lambda n=period: len(daemon.alerts.records) == n, 45, f"firing period {period}", am_log)
                time.sleep(1.1)  # the next sample must be newer, by the second
                push_samples(prom.url, [(int(time.time()), 100.0)])
                wait_for(lambda: all(r.ends_at for r in daemon.alerts.records), 45, f"period {period} resolved",
                         am_log)
                time.sleep(1.1)
            listed = httpx.get(f"{base}/api/v1/alerts", params={"baseline": "e2e", "since": "1h"}, auth=AUTH)
            said = [httpx.post(f"{base}/api/v1/alerts/{r['id']}/feedback", json={"feedback": "noise"}, auth=AUTH)
                    for r in listed.json()["data"]]
            (retrained,) = daemon.retrain()
        finally:
            server.stop()
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2
    assert [r.status_code for r in said] == [200, 200]
    records = daemon.alerts.records
    assert {r.side for r in records} == {"above"} and {r.feedback for r in records} == {"noise"}
    assert all(r.value == pytest.approx(excursion) for r in records)
    assert retrained.fitted == 1 and retrained.adjusted == 1
    band = daemon.states["e2e"].series[0]
    (factor,) = feedback_factors(records, "e2e")[band.key].values()
    assert 1 < factor <= WIDEN_MAX and band.meta["feedback"] == {"above": factor}
    unwidened = dataclasses.replace(band, upper=band.yhat + (band.upper - band.yhat) / factor)
    assert replay_fires(unwidened, excursion, rules)  # without the feedback it would fire again
    assert not replay_fires(band, excursion, rules)
    assert replay_fires(band, larger, rules)
    adjustments = daemon.metrics.registry.get_sample_value("smartmetrics_feedback_adjustments", {"baseline": "e2e"})
    assert adjustments == 1


@pytest.mark.slow
def test_an_alert_silenced_in_a_real_alertmanager_counts_as_noise_at_the_next_retrain(
    tmp_path: Path, alertmanager
) -> None:
    """`feedback.silences_as_noise`: on-call silences one of smartmetrics' alerts in Alertmanager (its
    API, as amtool and the UI do); the next retrain reads the silences, marks that alert `noise`, and
    widens its series' band; an alert on another instance and an explicit `real` stay as they were."""
    from smartmetrics.adapters.alert_store import load_alerts, save_alerts
    from tests.app.test_alerts import offline, silenced_record, write_silence_config

    _, am_log, start_alertmanager = alertmanager
    am = tmp_path / "am.yml"
    am.write_text(yaml.safe_dump({"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}))
    base = f"http://127.0.0.1:{start_alertmanager(am)}"
    wait_for(lambda: _answers(f"{base}/-/ready"), 30, "alertmanager ready", am_log)
    now = time.time()
    store = tmp_path / "models"
    save_alerts(store, [silenced_record("on-a", now - 600), silenced_record("on-b", now - 600, instance="b"),
                        silenced_record("said-real", now - 600, "real", instance="c")])
    daemon = offline(write_silence_config(tmp_path / "c.yaml", store, base))
    (before,) = daemon.retrain()  # no silence yet
    assert before.adjusted == 0 and [r.feedback for r in daemon.alerts.records] == [None, None, "real"]
    silence = {"matchers": [{"name": "baseline", "value": "rate", "isRegex": False, "isEqual": True},
                            {"name": "instance", "value": "a|c", "isRegex": True, "isEqual": True}],
               "startsAt": rfc3339(time.time()), "endsAt": rfc3339(time.time() + 3600),
               "createdBy": "oncall", "comment": "known flaky"}
    created = httpx.post(f"{base}/api/v2/silences", json=silence, timeout=10)
    assert created.status_code == 200, created.text
    (after,) = daemon.retrain()
    records = {r.id: r for r in load_alerts(store)}  # written to the store, not only in memory
    assert {i: r.feedback for i, r in records.items()} == {"on-a": "noise", "on-b": None, "said-real": "real"}
    assert records["on-a"].feedback_at >= now
    assert after.adjusted == 1 and daemon.states["rate"].series[0].meta["feedback"] == {"above": WIDEN_MAX}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def rfc3339(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
