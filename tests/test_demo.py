"""The demo end to end: real Prometheus, fit, replay, daemon, scrape; nothing left running."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from smartmetrics.demo import run_demo
from smartmetrics.demo_data import DEMO_INCIDENTS


@pytest.mark.slow
def test_demo_catches_the_injected_incidents_and_cleans_up(tmp_path: Path, prometheus_binaries: tuple) -> None:
    assert run_demo(tmp_path, duration=0, workers=1) == 0
    replays = {p.name: pd.read_csv(p) for p in (tmp_path / "replay").glob("*.csv")}
    assert len(replays) == 22
    end = max(int(f.timestamp.max()) for f in replays.values())
    for incident in DEMO_INCIDENTS:
        start, stop = end - incident.start_h * 3600, end - incident.end_h * 3600 + 1800
        caught = [name for name, f in replays.items()
                  if ((f.alert == 1) & (f.timestamp >= start) & (f.timestamp <= stop)).any()]
        assert caught, f"no alert for {incident.what}"
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).startswith("/usr/bin/prometheus")
                 and str(tmp_path) in _cmdline(p)]
    assert leftovers == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
