"""`smartmetrics backfill` against a real, running Prometheus: the replayed bands land in its TSDB and
PromQL answers them for the past days, where the daemon never exported anything; the bands are the
walk-forward replay's, and the history stops where exported bands begin."""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries
from smartmetrics.config import parse_config
from smartmetrics.engine.series import align_down

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]
DAYS = 4


def history(end: int) -> list[MetricSeries]:
    ts = np.arange(end - DAYS * 86400, end + 1, 300, dtype=np.int64)
    rng = np.random.default_rng(5)
    daily = np.sin(2 * np.pi * (ts % 86400) / 86400)
    return [MetricSeries("bf_rate", {"job": "api", "instance": inst}, ts, 100 + 10 * i + 30 * daily
                         + rng.normal(0, 1, len(ts))) for i, inst in enumerate("ab")]


@pytest.fixture(scope="module")
def prom(prometheus_binaries) -> Iterator[LocalPrometheus]:
    with LocalPrometheus(history(align_down(time.time(), 300))) as p:
        yield p


def config_file(root: Path, url: str) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": url}},
        "baselines": {"rate": {"expr": "bf_rate", "step": "5m", "history": "3d"}},
        "store": {"path": str(root / "models")},
    }))
    return path


def query_at(url: str, expr: str, at: float) -> list[dict]:
    doc = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": str(at)}, timeout=10).json()
    return doc["data"]["result"]


def test_backfill_writes_the_replayed_bands_into_a_running_prometheus(prom: LocalPrometheus, tmp_path: Path) -> None:
    from smartmetrics.app.backfill import band_history

    config = config_file(tmp_path, prom.url)
    now = time.time()
    two_days_ago = align_down(now - 2 * 86400, 300)
    assert query_at(prom.url, 'smartmetrics_yhat_upper{baseline="rate"}', two_days_ago) == []

    done = subprocess.run([sys.executable, "-m", "smartmetrics", "backfill", "--config", str(config), "--days",
                           str(DAYS), "--data-dir", str(prom.workdir / "data")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "smartmetrics backfill into" in done.stdout and "rate" in done.stdout

    deadline, found = time.monotonic() + 150, []
    while not found and time.monotonic() < deadline:  # Prometheus picks new blocks up on its own
        found = query_at(prom.url, 'smartmetrics_yhat_upper{baseline="rate"}', two_days_ago)
        time.sleep(3)
    assert {r["metric"]["instance"] for r in found} == {"a", "b"}, prom.log_tail()
    assert all(r["metric"]["job"] == "api" for r in found)  # the labels the daemon exports

    parsed = parse_config(yaml.safe_load(config.read_text()))
    again, outcome = band_history(parsed, "rate", DAYS, None, time.time())
    assert again == [] and outcome.series == 0  # the bands are there now: a second run adds nothing
    # The backfill read its history on its own clock, a little after `now`: if a 5-minute step began
    # meanwhile, its grid (and so the training of its first replayed days) starts a step later than
    # one read at `now`. Replay as it did, up to the last band it wrote (its grid's end).
    written = calendar.timegm(time.strptime(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", done.stdout)[-1],
                                            "%Y-%m-%d %H:%M"))
    assert 0 <= written - align_down(now, 300) <= 600, done.stdout
    expected, outcome = band_history(parsed, "rate", DAYS, written + 1, written)
    assert outcome.series == 2 and outcome.error is None
    want = {m.labels["instance"]: float(m.values[m.timestamps == two_days_ago][0])
            for m in expected if m.name == "smartmetrics_yhat_upper"}
    for r in found:  # the very values the walk-forward replay gave at that time
        assert float(r["value"][1]) == pytest.approx(want[r["metric"]["instance"]], rel=1e-12)
    first_day = align_down(now - (DAYS - 0.5) * 86400, 300)  # the first day only trains: no band
    assert query_at(prom.url, 'smartmetrics_yhat_upper{baseline="rate"}', first_day) == []

    # the series API: value and band over the whole requested range, the band's past from Prometheus
    from smartmetrics.app.daemon import Daemon

    daemon = Daemon(str(config), workers=1)
    daemon._pool.close()
    daemon._pool = None
    daemon.load()
    assert daemon.retrain()[0].fitted == 2
    table_start = min(b.start for b in daemon.states["rate"].series)
    rfc3339 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2.5 * 86400))
    code, doc = daemon.series_json("rate", {"match": '{instance="a"}', "start": rfc3339, "end": str(now)})
    assert code == 200 and "warnings" not in doc, doc
    lines = {line["name"].rsplit(" ", 1)[1]: line["data"] for line in doc["data"]}
    assert set(lines) == {"value", "yhat", "yhat_lower", "yhat_upper"}
    before = [p for p in lines["yhat_upper"] if p["x"] < table_start * 1000]
    # reaches back as far as asked, or to the replay's first band (a release at midnight: how far back
    # that is depends on the time of day)
    first_band = min(int(m.timestamps[0]) for m in expected if m.labels["instance"] == "a")
    assert before and before[0]["x"] <= (max(first_band, now - 2.5 * 86400) + 300) * 1000
    at = next(p for p in before if p["x"] == two_days_ago * 1000)
    assert at["y"] == pytest.approx(want["a"], rel=1e-12)
    assert lines["value"][0]["x"] <= (now - 2.4 * 86400) * 1000


def test_backfill_explains_bad_input(prom: LocalPrometheus, tmp_path: Path) -> None:
    config = config_file(tmp_path, prom.url)
    run = [sys.executable, "-m", "smartmetrics", "backfill", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run([*run, "--days", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--days must be more than 1" in done.stderr
    done = subprocess.run([*run, "--until", "yesterday"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "neither Unix seconds nor RFC 3339" in done.stderr
    done = subprocess.run([*run, "--baseline", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown baseline nope" in done.stderr


def test_backfill_through_remote_write_into_a_prometheus_that_takes_out_of_order_samples(tmp_path: Path) -> None:
    end = align_down(time.time(), 300)
    with LocalPrometheus(history(end), flags=["--web.enable-remote-write-receiver"], out_of_order="30d") as prom:
        config = config_file(tmp_path, prom.url)
        data = yaml.safe_load(config.read_text())
        data["export"] = {"remote_write": {"url": f"{prom.url}/api/v1/write", "batch_size": 2000}}
        config.write_text(yaml.safe_dump(data))
        done = subprocess.run([sys.executable, "-m", "smartmetrics", "backfill", "--config", str(config), "--days",
                               str(DAYS), "--remote-write"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert "sent by remote write" in done.stdout
        found = query_at(prom.url, 'smartmetrics_yhat_upper{baseline="rate"}', align_down(end - 2 * 86400, 300))
        assert {r["metric"]["instance"] for r in found} == {"a", "b"}  # at once: no blocks to wait for

        data.pop("export")
        config.write_text(yaml.safe_dump(data))
        done = subprocess.run([sys.executable, "-m", "smartmetrics", "backfill", "--config", str(config),
                               "--remote-write"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "--remote-write needs export.remote_write" in done.stderr
