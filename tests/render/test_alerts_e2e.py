"""End to end with real processes: Prometheus (backfilled) <- daemon fits <- Prometheus scrapes it and
evaluates the generated rules; an injected anomaly fires its alert, the untouched series stay quiet.

One baseline selects raw series (with their own job/instance); the other aggregates them away
(`sum by (model)`), so its band series get the daemon target's job/instance under `honor_labels`
and the value/band matching has to ignore them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.adapters.store import load_store
from smartmetrics.app.promlocal import (
    LocalPrometheus,
    LocalPrometheusError,
    MetricSeries,
    find_binaries,
    free_port,
    start_on_free_port,
)
from smartmetrics.config import load_config
from smartmetrics.engine.series import align_down
from smartmetrics.render.parts import write_files
from smartmetrics.render.rules import render_rule_files

ANOMALY = 4 * 60  # the last minutes of history jump; under one 5m step, so the fit barely sees it
JUMP = 80.0


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError, KeyError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_daemon(config_file: Path, port: int, log: Path) -> subprocess.Popen:
    """`smartmetrics run` on the config, its server on `port`."""
    doc = yaml.safe_load(config_file.read_text())
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    config_file.write_text(yaml.safe_dump(doc))
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "smartmetrics", "run", "--config", str(config_file),
                                 "--workers", "1"], stdout=out, stderr=subprocess.STDOUT)


def history(now: int) -> list[MetricSeries]:
    """Two days of smooth daily curves up to now; `req{instance=a}` and `tok{model=x}` jump at the end.

    History cannot reach into the future (Prometheus would refuse every later sample as out of
    bounds), so the last samples stay current for Prometheus' 5-minute lookback: enough for this test.
    """
    end = align_down(now, 60)
    ts = np.arange(end - 2 * 86400, end + 1, 60, dtype=np.int64)
    daily = 20 * np.sin(2 * np.pi * (ts % 86400) / 86400)
    noise = np.random.default_rng(3).normal(0, 0.5, (4, len(ts)))
    jump = np.where(ts > end - ANOMALY, JUMP, 0.0)
    return [
        MetricSeries("sm_req", {"job": "api", "instance": "a"}, ts, 100 + daily + noise[0] + jump),
        MetricSeries("sm_req", {"job": "api", "instance": "b"}, ts, 100 + daily + noise[1]),
        MetricSeries("sm_tok", {"job": "gen", "instance": "p1", "model": "x"}, ts, 60 + daily + noise[2] + jump),
        MetricSeries("sm_tok", {"job": "gen", "instance": "p1", "model": "y"}, ts, 60 + daily + noise[3]),
    ]


def query(url: str, promql: str) -> list[dict]:
    return httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]


@pytest.mark.slow
def test_injected_anomaly_fires_and_normal_series_stay_quiet(tmp_path: Path) -> None:
    try:
        find_binaries()
    except LocalPrometheusError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    port, rules = free_port(), tmp_path / "rules"
    now = int(time.time())
    with LocalPrometheus(history(now), scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="1s",
                         rule_files=[rules / "*.rules.yml"]) as prom:
        config_file = tmp_path / "config.yaml"
        alert = {"for": "3s"}
        config_file.write_text(yaml.safe_dump({
            "sources": {"prom": {"url": prom.url}},
            "baselines": {"raw": {"expr": "sm_req", "step": "5m", "history": "2d", "alert": alert},
                          "agg": {"expr": "sum by (model) (sm_tok)", "step": "5m", "history": "2d", "alert": alert}},
            "schedule": {"jitter": "0s", "discover": "1h"},
            "store": {"path": str(tmp_path / "models")},
            "server": {"listen": f"127.0.0.1:{port}"},
        }))
        daemon, listening = start_on_free_port(
            lambda at: run_daemon(config_file, at, tmp_path / "daemon.log"), tmp_path / "daemon.log", "listening on",
            port=port)
        try:
            if listening != port:  # its port was taken before the daemon bound it: scrape the one it listens on
                prom.retarget(scrape_targets=[f"127.0.0.1:{listening}"])
            wait_for(lambda: len(load_store(tmp_path / "models")[0]) == 2, 120, "the first fit of both baselines")
            config = load_config(config_file)
            write_files(rules, render_rule_files(config, load_store(config.store.path)[0]))
            prom.reload()
            firing = wait_for(lambda: len(r := query(prom.url, 'ALERTS{alertstate="firing"}')) >= 2 and r,
                              60, "the two injected anomalies to fire")
            time.sleep(5)  # more than `for` plus a few evaluations: anything else would be pending or firing too
            alerts = query(prom.url, "ALERTS")
            scores = query(prom.url, "smartmetrics:anomaly_score")
            agg_band = query(prom.url, 'smartmetrics_yhat{baseline="agg"}')
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    assert all(b["metric"]["job"] == "smartmetrics" for b in agg_band)  # honor_labels added the daemon's job
    assert len(scores) == 4  # value and band matched exactly once per series, extra labels or not
    assert {s["metric"]["baseline"] for s in scores} == {"raw", "agg"}
    seen = {(a["metric"]["alertname"], a["metric"].get("instance") or a["metric"].get("model"),
             a["metric"]["alertstate"]) for a in alerts}
    assert seen == {("RawAnomaly", "a", "firing"), ("AggAnomaly", "x", "firing")}
    assert all(a["metric"]["severity"] == "warning" for a in firing)
