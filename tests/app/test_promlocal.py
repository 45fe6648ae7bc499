"""The test Prometheus follows a daemon or an Alertmanager that had to move to another port."""

from __future__ import annotations

import time

import httpx

from smartmetrics.app.promlocal import LocalPrometheus, free_port


def test_retarget_points_a_running_prometheus_elsewhere(prometheus_binaries: tuple[str, str]) -> None:
    first, moved, alertmanager = free_port(), free_port(), free_port()
    with LocalPrometheus(scrape_targets=[f"127.0.0.1:{first}"]) as prom:
        prom.retarget(scrape_targets=[f"127.0.0.1:{moved}"], alertmanagers=[f"127.0.0.1:{alertmanager}"])
        deadline, scraped = time.monotonic() + 30, []
        while time.monotonic() < deadline:  # the scrape manager takes the new targets a moment later
            targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            if (scraped := [t["labels"]["instance"] for t in targets]) == [f"127.0.0.1:{moved}"]:
                break
            time.sleep(0.2)
        assert scraped == [f"127.0.0.1:{moved}"]
        config = httpx.get(f"{prom.url}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
        assert f"127.0.0.1:{alertmanager}" in config and f"127.0.0.1:{first}" not in config
