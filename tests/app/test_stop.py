"""Stopping with real processes: SIGTERM in the middle of a retrain ends the daemon within seconds,
and no worker outlives the daemon, whether it stopped or was killed with SIGKILL (issue 20)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port
from smartmetrics.benchmarks.faults import Daemon, alive, descendants
from smartmetrics.engine.series import align_down

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_retrain(tmp_path_factory: pytest.TempPathFactory, prometheus_binaries: tuple[str, str]) -> Iterator[Path]:
    """A config whose retrain takes tens of seconds: 12 series of 3 days at 1m fitted with gbm alone."""
    root = tmp_path_factory.mktemp("stop")
    end = align_down(time.time(), 60)
    ts = np.arange(end - 3 * 86400, end + 1, 60, dtype=np.int64)
    rng = np.random.default_rng(3)
    series = [MetricSeries("sm_load", {"instance": f"i{i}"}, ts,
                           100 + 20 * np.sin(2 * np.pi * ts / 86400) + rng.normal(0, 1, len(ts))) for i in range(12)]
    with LocalPrometheus(series) as prom:
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({
            "sources": {"prom": {"url": prom.url}},
            "baselines": {"load": {"expr": "sm_load", "step": "1m", "history": "3d", "models": ["gbm"]}},
            "schedule": {"jitter": "0s"},
            "store": {"path": str(root / "models")},
            "server": {"listen": f"127.0.0.1:{free_port()}"},
        }))
        yield config


def start_fitting(config: Path, log: Path) -> tuple[subprocess.Popen, set[int]]:
    """The daemon, started and waited for until its workers are busy fitting; with its descendants."""
    daemon = Daemon(config, log)
    daemon.wait_log("retraining load", 0)
    time.sleep(4)  # the workers have started and taken their first fits
    found = descendants(daemon.proc.pid)
    assert daemon.proc.poll() is None and len(found) >= 2, log.read_text()
    return daemon.proc, found


def test_sigterm_in_the_middle_of_a_retrain_stops_within_seconds_and_leaves_no_process(
        slow_retrain: Path, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    proc, children = start_fitting(slow_retrain, log)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, log.read_text()
    assert time.monotonic() - stopped < 3  # queued fits cancelled, running ones killed: nothing to wait for
    deadline = time.monotonic() + 5
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), f"left behind: {alive(children)}"
    assert not (slow_retrain.parent / "models" / "load").exists()  # an abandoned retrain writes nothing


def test_sigkill_of_the_daemon_leaves_no_worker_behind(slow_retrain: Path, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    proc, children = start_fitting(slow_retrain, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), f"left behind: {alive(children)}"
