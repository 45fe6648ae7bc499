"""`smartmetrics alerts` and `smartmetrics feedback` on a store's alert history, directly and via the daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from smartmetrics.adapters.alert_store import load_alerts, save_alerts
from smartmetrics.adapters.server import serve
from smartmetrics.app.cli import main
from smartmetrics.app.promlocal import free_port
from smartmetrics.engine.alerts import AlertRecord

NOW = 1796551200.0


def write_config(tmp_path: Path, **server: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": "http://127.0.0.1:9"}},
        "baselines": {"rate": {"expr": "sm_rate"}, "lat": {"expr": "sm_lat"}},
        "store": {"path": str(tmp_path / "models")},
        "server": {"listen": f"127.0.0.1:{free_port()}", **server},
    }))
    save_alerts(tmp_path / "models", [
        AlertRecord("a1", "rate", "f1", {"baseline": "rate", "job": "api"}, '{job="api"}', NOW - 3600, NOW - 1800,
                    180.0, 100.0, 90.0, 110.0, "above"),
        AlertRecord("b2", "lat", "f2", {"baseline": "lat", "job": "db"}, '{job="db"}', NOW - 30 * 86400),
    ])
    return path


def test_alerts_lists_value_against_band_duration_and_feedback(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    assert main(["alerts", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "180 > [90, 110] (yhat 100)" in out and "30m" in out and "a1" in out and "b2" in out
    assert main(["alerts", "--config", str(config), "--baseline", "rate", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["a1"]
    assert main(["alerts", "--config", str(config), "--since", "2000d", "--match", '{job="db"}', "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["b2"]
    assert main(["alerts", "--config", str(config), "--since", "later"]) == 2
    assert "since='later'" in capsys.readouterr().err


def test_feedback_writes_the_history_and_refuses_an_unknown_id(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    assert main(["feedback", "--config", str(config), "a1", "noise"]) == 0
    assert {r.id: r.feedback for r in load_alerts(tmp_path / "models")} == {"a1": "noise", "b2": None}
    assert main(["feedback", "--config", str(config), "zz", "real"]) == 2
    assert "no recorded alert with id 'zz'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["feedback", "--config", str(config), "a1", "meh"])


def test_feedback_through_the_running_daemon_with_its_auth(tmp_path: Path, capsys) -> None:
    from smartmetrics.app.daemon import Daemon

    config = write_config(tmp_path, basic_auth={"username": "am", "password": "pw"})
    daemon = Daemon(str(config), workers=1)
    daemon._pool.close()
    daemon._pool = None
    server = serve(daemon, daemon.config.server)
    try:
        url = f"http://127.0.0.1:{server.address[1]}"
        assert main(["feedback", "--config", str(config), "--url", url, "b2", "real"]) == 0
        assert daemon.alerts.records[0].feedback == "real" or daemon.alerts.records[1].feedback == "real"
        assert main(["feedback", "--config", str(config), "--url", url, "nope", "real"]) == 2
        assert "HTTP 404" in capsys.readouterr().err
    finally:
        server.stop()
    assert {r.id: r.feedback for r in load_alerts(tmp_path / "models")}["b2"] == "real"
