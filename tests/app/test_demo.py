"""The demo end to end as a user runs it: real Prometheus, fit, replay, daemon, scrape, Ctrl-C.

It runs as a separate process started with SIGINT ignored, as a shell starts a background job, and
must still stop cleanly on Ctrl-C, leaving no Prometheus behind.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from smartmetrics.app.demo_data import DEMO_INCIDENTS


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def run_demo_until_serving(out: Path, log: Path, timeout: float = 600) -> subprocess.Popen:
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartmetrics", "demo", "--out", str(out), "--workers", "1"],
            stdout=sink, stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    deadline = time.monotonic() + timeout
    while b"serving; press Ctrl-C" not in log.read_bytes():
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the demo did not reach its summary"
        time.sleep(1)
    return proc


@pytest.mark.slow
def test_demo_catches_the_incidents_and_stops_cleanly_on_ctrl_c(tmp_path: Path, prometheus_binaries: tuple) -> None:
    out, log = tmp_path / "demo", tmp_path / "demo.log"
    (out / "prometheus" / "data").mkdir(parents=True)  # what an earlier run leaves: removed, and said so
    (out / "replay").mkdir()
    (out / "replay" / "inference_qps-48c1a3ee.csv").write_text("stale\n")
    proc = run_demo_until_serving(out, log)
    url = re.search(r"Prometheus: (http://127\.0\.0\.1:\d+)/graph", log.read_text()).group(1)
    week_ago = str(time.time() - 7 * 86400)
    deadline, alerts, past = time.monotonic() + 420, [], []
    while not (alerts and past) and time.monotonic() < deadline:
        doc = httpx.get(f"{url}/api/v1/query", params={"query": 'ALERTS{baseline="error_ratio"}'}).json()
        alerts = doc["data"]["result"]  # the live incident: an alert in Prometheus itself
        doc = httpx.get(f"{url}/api/v1/query", params={"query": 'smartmetrics_yhat_upper{baseline="inference_qps"}',
                                                         "time": week_ago}).json()
        past = doc["data"]["result"]  # the bands backfilled over the past days
        time.sleep(5)
    assert alerts, "the live incident raised no alert in Prometheus"
    assert len(past) == 9, past  # 3 models x 3 tenants, a week before the demo started
    assert {a["metric"]["model_name"] for a in alerts} == {"whisper-large"}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]
    text = log.read_text(errors="replace")
    assert "what the bands did over the last 3 days" in text and "stopped: Prometheus and the daemon are down" in text
    assert "held an earlier demo run: removed its prometheus, replay; starting clean" in text
    assert "live: an error burst (live) on {model_name=\"whisper-large\"}" in text

    index = pd.read_csv(out / "replay" / "index.csv")
    replays = {p.name: pd.read_csv(p) for p in (out / "replay").glob("*--*.csv")}
    assert len(replays) == 22 and sorted(index.file) == sorted(replays)
    assert "inference_qps--model_name=llama-3-8b,tenant_id=acme.csv" in replays
    assert not (out / "replay" / "inference_qps-48c1a3ee.csv").exists()
    end = max(int(f.timestamp.max()) for f in replays.values())
    for incident in DEMO_INCIDENTS:
        start, stop = end - incident.start_h * 3600, end - incident.end_h * 3600 + 1800
        caught = [name for name, f in replays.items()
                  if ((f.alert == 1) & (f.timestamp >= start) & (f.timestamp <= stop)).any()]
        assert caught, f"no alert for {incident.what}"
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == sorted(
        f"{alias}.png" for alias in ("inference_qps", "p99_latency", "error_ratio", "median_confidence",
                                     "gpu_utilization"))
    assert (out / "rules" / "smartmetrics.rules.yml").exists()
    leftovers = [p for p in Path("/proc").glob("[0-9]*")
                 if _cmdline(p).startswith("/usr/bin/prometheus") and str(out) in _cmdline(p)]
    assert leftovers == []
