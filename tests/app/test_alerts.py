"""The daemon's alert history: Alertmanager's webhook recorded with the band, listed, given feedback,
kept across a restart, and repeated `noise` widening that side of the band at the next retrain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from smartmetrics.app.promlocal import free_port
from smartmetrics.app.retrain import retrain_baseline
from smartmetrics.config import load_config
from smartmetrics.engine.alerts import WIDEN_MAX, AlertRecord


def write_config(path: Path, store: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": "http://127.0.0.1:9"}},
        "baselines": {"rate": {"expr": "sm_rate", "step": "5m", "history": "3d"}},
        "schedule": {"jitter": "0s", "discover": "1h"},
        "store": {"path": str(store)},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
    }))
    return path


def fake_fetch(config, alias: str, end: float | None = None, **_: object):
    from smartmetrics.adapters.source import FetchResult
    from smartmetrics.engine.series import Series
    from smartmetrics.evaluation.synth import make_series

    s = make_series("stable", days=3, seed=3).series
    series = Series({"instance": "a", "job": "api"}, s.timestamps, s.values, s.step)
    return FetchResult(alias=alias, series=[series], dropped=0, requests=1, points=0, seconds=0.0)


def offline(config: Path):
    from smartmetrics.app.daemon import Daemon

    daemon = Daemon(str(config), workers=1)
    daemon._pool.close()
    daemon._pool = None
    daemon.fetch = fake_fetch
    daemon.load()
    return daemon


@pytest.fixture
def daemon(tmp_path: Path):
    d = offline(write_config(tmp_path / "c.yaml", tmp_path / "models"))
    d.retrain()
    return d


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def webhook(starts: float, value: float, status: str = "firing", ends: float | None = None, **labels: str) -> bytes:
    alert = {"status": status, "fingerprint": f"fp{starts:.0f}", "startsAt": rfc3339(starts),
             "endsAt": rfc3339(ends) if ends else "0001-01-01T00:00:00Z",
             "labels": {"alertname": "SmartmetricsAnomaly", "baseline": "rate", "severity": "warning",
                        "instance": "a", "job": "api", **labels},
             "annotations": {"value": f"{value:.4g}", "summary": "rate is outside its expected range"}}
    return json.dumps({"version": "4", "status": status, "receiver": "sm", "alerts": [alert]}).encode()


def sample(daemon, name: str, **labels: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, labels)


def test_a_webhook_is_recorded_with_its_band_and_survives_a_restart(daemon, tmp_path: Path) -> None:
    band = daemon.states["rate"].series[0]
    starts = band.start + 2 * band.step
    status, doc = daemon.receive_alerts(webhook(starts, 1e6))
    assert status == 200 and len(doc["data"]["recorded"]) == 1 and doc["data"]["ignored"] == 0
    status, listed = daemon.alerts_json({})
    (record,) = listed["data"]
    yhat, lower, upper = band.at(starts)
    assert record["yhat"] == pytest.approx(yhat) and (record["lower"], record["upper"]) == pytest.approx((lower, upper))
    assert record["value"] == 1e6 and record["side"] == "above" and record["ends_at"] is None
    daemon.receive_alerts(webhook(starts, 1e6, status="resolved", ends=starts + 600))
    assert [r["ends_at"] for r in daemon.alerts_json({})[1]["data"]] == [starts + 600]
    assert sample(daemon, "smartmetrics_alerts_received_total", baseline="rate") == 2
    assert sample(daemon, "smartmetrics_alerts_recorded_total", baseline="rate") == 1
    again = offline(tmp_path / "c.yaml")
    assert again.alerts_json({})[1]["data"] == daemon.alerts_json({})[1]["data"]


@pytest.mark.parametrize("body, why", [(b"{", "not JSON"), (b'{"version": "3", "alerts": []}', "version")])
def test_other_payloads_get_a_400_with_the_reason_and_are_counted(daemon, body: bytes, why: str) -> None:
    status, doc = daemon.receive_alerts(body)
    assert status == 400 and why in doc["error"]
    assert sample(daemon, "smartmetrics_alert_payloads_rejected_total", reason="invalid") == 1


def test_history_is_filtered_by_baseline_match_and_since(daemon) -> None:
    band = daemon.states["rate"].series[0]
    for i in range(3):
        daemon.receive_alerts(webhook(band.start + i * 3600, 1e6))
    assert len(daemon.alerts_json({"baseline": "rate"})[1]["data"]) == 3
    assert daemon.alerts_json({"baseline": "nope"})[0] == 404
    assert daemon.alerts_json({"match": '{instance="b"}'})[1]["data"] == []
    assert len(daemon.alerts_json({"since": str(band.start + 3600)})[1]["data"]) == 2
    status, doc = daemon.alerts_json({"since": "soon"})
    assert status == 400 and "since" in doc["error"]


def test_feedback_is_recorded_and_refused_with_a_reason(daemon) -> None:
    band = daemon.states["rate"].series[0]
    (alert_id,) = daemon.receive_alerts(webhook(band.start, 1e6))[1]["data"]["recorded"]
    status, doc = daemon.alert_feedback(alert_id, b'{"feedback": "noise"}')
    assert status == 200 and doc["data"]["feedback"] == "noise"
    assert daemon.alert_feedback(alert_id, b'{"feedback": "meh"}')[0] == 400
    assert daemon.alert_feedback(alert_id, b"noise")[0] == 400
    assert daemon.alert_feedback("nope", b'{"feedback": "real"}')[0] == 404
    assert daemon.alerts_json({})[1]["data"][0]["feedback"] == "noise"


def test_repeated_noise_widens_that_side_at_the_next_retrain_and_real_cancels(
    daemon, tmp_path: Path, monkeypatch
) -> None:
    config = load_config(tmp_path / "c.yaml")
    now = daemon.states["rate"].fitted_at
    band = daemon.states["rate"].series[0]
    for i in range(2):
        (alert_id,) = daemon.receive_alerts(webhook(band.start + i * 3600, 1e6))[1]["data"]["recorded"]
        daemon.alert_feedback(alert_id, b'{"feedback": "noise"}')

    def fitted(alerts: list[AlertRecord]):
        outcome = retrain_baseline(config, "rate", None, None, now, fetch=fake_fetch, alerts=alerts)
        return outcome, outcome.state.series[0]

    _, plain = fitted([])
    outcome, wider = fitted(daemon.alerts.records)
    # the value 1e6 is far past the band: that side is widened up to the bound, no further
    assert outcome.adjusted == 1 and wider.meta["feedback"] == {"above": WIDEN_MAX}
    assert (wider.upper - wider.yhat) == pytest.approx(WIDEN_MAX * (plain.upper - plain.yhat), rel=1e-5)
    assert wider.lower == pytest.approx(plain.lower)
    from_store = retrain_baseline(config, "rate", None, None, now, fetch=fake_fetch)  # as `smartmetrics fit` does
    assert from_store.adjusted == 1
    daemon.retrain()
    assert sample(daemon, "smartmetrics_feedback_adjustments", baseline="rate") == 1
    assert daemon.states["rate"].series[0].meta["feedback"] == {"above": WIDEN_MAX}
    from smartmetrics.app.classify_cli import classify_baselines

    monkeypatch.setattr("smartmetrics.adapters.source.fetch_baseline", fake_fetch)
    assert [row.feedback for row in classify_baselines(config, ["rate"])] == [{"above": WIDEN_MAX}]
    (real_id,) = daemon.receive_alerts(webhook(band.start + 7200, 1e6))[1]["data"]["recorded"]
    daemon.alert_feedback(real_id, b'{"feedback": "real"}')
    assert fitted(daemon.alerts.records)[0].adjusted == 0


def write_silence_config(path: Path, store: Path, alertmanager: str) -> Path:
    write_config(path, store)
    doc = yaml.safe_load(path.read_text())
    doc["feedback"] = {"silences_as_noise": True, "alertmanager": {"url": alertmanager, "timeout": "2s"}}
    path.write_text(yaml.safe_dump(doc))
    return path


def silenced_record(id: str, starts: float, feedback: str | None = None, instance: str = "a") -> AlertRecord:
    from smartmetrics.engine.series import labels_key

    labels = {"instance": instance, "job": "api"}
    return AlertRecord(id, "rate", "fp" + id, {**labels, "alertname": "SmartmetricsAnomaly", "baseline": "rate"},
                       labels_key(labels), starts, value=1e6, yhat=1.0, lower=0.5, upper=1.5, side="above",
                       feedback=feedback)


def test_an_alertmanager_that_cannot_be_read_is_counted_and_changes_nothing(tmp_path: Path, caplog) -> None:
    from smartmetrics.adapters.alert_store import load_alerts, save_alerts

    store = tmp_path / "models"
    save_alerts(store, [silenced_record("x", 1000.0)])
    daemon = offline(write_silence_config(tmp_path / "c.yaml", store, f"http://127.0.0.1:{free_port()}"))
    daemon.sync_silences()
    assert sample(daemon, "smartmetrics_silence_sync_errors_total") == 1
    assert "silences: http://127.0.0.1" in caplog.text
    assert [r.feedback for r in load_alerts(store)] == [None]
    assert daemon.retrain()[0].fitted == 1  # the retrain goes on without them
    assert sample(daemon, "smartmetrics_silence_sync_errors_total") == 2
