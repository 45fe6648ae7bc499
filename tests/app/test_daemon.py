"""The daemon with real processes: Prometheus (backfilled) <- daemon fits <- Prometheus scrapes it.

Also: a restart serves the stored bands at once, a crash mid-write corrupts nothing, and an
unreachable Prometheus during a retrain is counted while the last good bands keep being served.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from smartmetrics.adapters.store import load_baseline, load_store, save_baseline
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port, start_on_free_port
from smartmetrics.engine.series import align_down
from smartmetrics.engine.state import BaselineState, SeriesBand

INSTANCES = ("a", "b", "c")


def wait_for(check: Callable[[], object], timeout: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def history(end: int, days: int = 3) -> list[MetricSeries]:
    ts = np.arange(end - days * 86400, end + 1, 60, dtype=np.int64)
    daily = np.sin(2 * np.pi * (ts % 86400) / 86400)
    rng = np.random.default_rng(7)
    return [
        MetricSeries("sm_rate", {"job": "api", "instance": inst}, ts,
                     100 + 10 * i + 30 * daily + rng.normal(0, 1, len(ts)))
        for i, inst in enumerate(INSTANCES)
    ]


def write_config(path: Path, prom_url: str, port: int, store: Path, **source: object) -> Path:
    config = {
        "sources": {"prom": {"url": prom_url, **source}},
        "baselines": {"rate": {"expr": "sm_rate", "step": "5m", "history": "3d"}},
        "schedule": {"jitter": "0s", "discover": "1h"},
        "store": {"path": str(store)},
        "server": {"listen": f"127.0.0.1:{port}"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prometheus_binaries: tuple[str, str]) -> Iterator[dict]:
    """A Prometheus scraping a daemon port every second, with 3 days of history; the daemon not yet started."""
    root = tmp_path_factory.mktemp("stack")
    port = free_port()
    end = align_down(time.time(), 60)
    with LocalPrometheus(history(end), scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="1s") as prom:
        config = write_config(root / "config.yaml", prom.url, port, root / "models")
        yield {"prom": prom, "port": port, "config": config, "store": root / "models", "root": root}


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    """`smartmetrics run` on `config`, waited for until it listens: on the config's port, or on another
    (written into the config) if that one was taken before the daemon could bind it."""
    doc = yaml.safe_load(config.read_text())

    def launch(port: int) -> subprocess.Popen:
        doc["server"]["listen"] = f"127.0.0.1:{port}"
        config.write_text(yaml.safe_dump(doc))
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "smartmetrics", "run", "--config", str(config), "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT,
            )

    proc, _ = start_on_free_port(launch, log, "listening on", port=config_port(config))
    return proc


def config_port(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["server"]["listen"].rsplit(":", 1)[1])


def stop_daemon(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def prom_query(url: str, query: str) -> list[dict]:
    doc = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()
    return doc["data"]["result"]


@pytest.mark.slow
def test_prometheus_scrapes_the_bands_the_daemon_fitted(stack: dict) -> None:
    prom = stack["prom"]
    daemon = start_daemon(stack["config"], stack["root"] / "daemon.log")
    port = config_port(stack["config"])
    try:
        if port != stack["port"]:  # its port was taken meanwhile: scrape the one it listens on
            prom.retarget(scrape_targets=[f"127.0.0.1:{port}"])
        wait_for(lambda: (stack["store"] / "rate" / "state.npz").exists(), 120, "the first fit")
        results = wait_for(lambda: len(r := prom_query(prom.url, 'smartmetrics_yhat_upper{baseline="rate"}')) == 3 and r,
                           60, "Prometheus to scrape three bands")
        state = load_baseline(stack["store"] / "rate" / "state.npz")
        bands = {b.labels["instance"]: b for b in state.series}
        for result in results:
            labels = dict(result["metric"])
            assert labels.pop("__name__") == "smartmetrics_yhat_upper"
            assert labels == {"baseline": "rate", "job": "api", "instance": labels["instance"]}
            t, value = float(result["value"][0]), float(result["value"][1])
            expected = bands[labels["instance"]].at(t)
            assert expected is not None and value == pytest.approx(expected[2], rel=1e-3)
        lower = prom_query(prom.url, 'smartmetrics_yhat_lower{baseline="rate"} < smartmetrics_yhat_upper{baseline="rate"}')
        assert len(lower) == 3
        up = prom_query(prom.url, 'smartmetrics_last_successful_retrain_timestamp_seconds{baseline="rate"}')
        assert up and time.time() - float(up[0]["value"][1]) < 300
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/baselines").json()["data"][0]["series"] == 3
    finally:
        assert stop_daemon(daemon) == 0


@pytest.mark.slow
def test_restart_serves_stored_bands_at_once_even_without_prometheus(stack: dict) -> None:
    if not (stack["store"] / "rate" / "state.npz").exists():
        pytest.skip("needs the store written by the scrape test")
    config = write_config(stack["root"] / "offline.yaml", "http://127.0.0.1:9", free_port(), stack["store"],
                          retries=0, timeout="1s")
    t0 = time.monotonic()
    daemon = start_daemon(config, stack["root"] / "offline.log")
    port = config_port(config)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/-/ready").status_code == 200, 30, "ready")
        ready_after = time.monotonic() - t0
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert text.count('smartmetrics_yhat_upper{baseline="rate"') == 3
        assert ready_after < 15
    finally:
        assert stop_daemon(daemon) == 0


def test_a_daemon_whose_port_is_taken_before_it_binds_is_started_on_another(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", taken.getsockname()[1], tmp_path / "models",
                              retries=0, timeout="1s")
        daemon = start_daemon(config, tmp_path / "daemon.log")
        try:
            port = config_port(config)
            assert port != taken.getsockname()[1]
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/-/healthy").status_code == 200, 30, "healthy")
        finally:
            assert stop_daemon(daemon) == 0
    assert "Address already in use" in (tmp_path / "daemon.log").read_text()


WRITER = """
import sys, numpy as np
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.adapters.store import save_baseline
root, i = sys.argv[1], 0
while True:
    i += 1
    y = np.full(2000, float(i))
    bands = tuple(SeriesBand({"n": str(k)}, 0, 60, y, y - 1, y + 1) for k in range(200))
    save_baseline(root, BaselineState("rate", float(i), bands))
    print(i, flush=True)
"""


def test_kill_9_in_the_middle_of_writes_never_corrupts_the_store(tmp_path: Path) -> None:
    y = np.zeros(10)
    save_baseline(tmp_path, BaselineState("rate", 0.0, (SeriesBand({"n": "0"}, 0, 60, y, y, y),)))
    rng = np.random.default_rng(1)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one write completed; the next is under way
        time.sleep(float(rng.uniform(0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        states, errors = load_store(tmp_path)
        assert errors == [] and "rate" in states
        state = states["rate"]
        assert all(b.yhat[0] == state.fitted_at for b in state.series)  # one consistent generation


def test_prometheus_outage_during_retrain_keeps_serving_and_recovers(stack: dict, tmp_path: Path) -> None:
    from smartmetrics.app.daemon import Daemon

    prom = stack["prom"]
    config = write_config(tmp_path / "c.yaml", prom.url, free_port(), tmp_path / "models", retries=1, timeout="1s")
    daemon = Daemon(str(config), workers=1)
    try:
        daemon.load()
        first = daemon.retrain()
        assert first[0].error is None and first[0].fitted == 3
        os.kill(prom.process.pid, signal.SIGSTOP)
        wait_for(lambda: "T (stopped)" in Path(f"/proc/{prom.process.pid}/status").read_text(), 10, "SIGSTOP")
        try:
            outage = daemon.retrain()
        finally:
            os.kill(prom.process.pid, signal.SIGCONT)
        assert outage[0].error is not None and "rate" in outage[0].error
        text = daemon.metrics_text().decode()
        assert text.count('smartmetrics_yhat_upper{baseline="rate"') == 3
        assert 'smartmetrics_source_request_errors_total{baseline="rate",source="prom"} 1.0' in text
        again = daemon.retrain()
        assert again[0].error is None and again[0].fitted == 3
    finally:
        daemon.stop()


class FakeSource:
    """History for the in-process daemon without a server: a set of series that tests change."""

    def __init__(self, series: list) -> None:
        self.series = series
        self.calls = 0

    def __call__(self, config, alias: str, end: float | None = None, **_: object):
        from smartmetrics.adapters.source import FetchResult

        self.calls += 1
        return FetchResult(alias=alias, series=list(self.series), dropped=0, requests=1, points=0, seconds=0.0)


def series_for(instance: str, seed: int):
    from smartmetrics.engine.series import Series
    from smartmetrics.evaluation.synth import make_series

    s = make_series("stable", days=3, seed=seed).series
    return Series({"instance": instance, "job": "api"}, s.timestamps, s.values, s.step)


def offline(config: object):
    """A daemon on `config` that fits inline (no pool: these tests are about its state and schedule,
    not fitting speed), its store loaded; nothing started."""
    from smartmetrics.app.daemon import Daemon

    daemon = Daemon(str(config), workers=1)
    daemon._pool.close()
    daemon._pool = None
    daemon.load()
    return daemon


@pytest.fixture
def offline_daemon(tmp_path: Path):
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    daemon = offline(str(config))
    yield daemon
    daemon.stop = lambda: None  # nothing was started


def test_discovery_fits_only_new_series_and_expires_gone_ones(offline_daemon) -> None:
    daemon = offline_daemon
    source = FakeSource([series_for("a", 1), series_for("b", 2)])
    daemon.fetch = source
    assert daemon.retrain()[0].fitted == 2
    fitted_at = {b.key: b.meta["fitted_at"] for b in daemon.states["rate"].series}

    source.series = [*source.series, series_for("c", 3)]
    daemon.discover()
    state = daemon.states["rate"]
    assert sorted(b.labels["instance"] for b in state.series) == ["a", "b", "c"]
    assert {b.key: b.meta["fitted_at"] for b in state.series if b.key in fitted_at} == fitted_at  # not refit

    source.series = source.series[1:]  # "a" disappears from the source
    stale_key = series_for("a", 1).key
    daemon.last_seen["rate"][stale_key] -= daemon.config.schedule.stale_after + 1
    daemon.discover()
    assert sorted(b.labels["instance"] for b in daemon.states["rate"].series) == ["b", "c"]
    assert daemon._snapshot.series_count() == 2  # the published snapshot follows the state


def test_a_series_whose_batch_failed_is_refitted_by_the_next_discovery(offline_daemon) -> None:
    """A series that kept yesterday's band because its batch could not be fetched is not left for a
    day: the state lists it as unfitted (also across a restart), and discovery fits it."""
    from smartmetrics.adapters.source import FetchResult

    daemon = offline_daemon
    a, b = series_for("a", 1), series_for("b", 2)
    daemon.fetch = FakeSource([a, b])
    daemon.retrain()
    old_b = next(x for x in daemon.states["rate"].series if x.key == b.key).meta["fitted_at"]

    def b_failed(config, alias, end=None, **_):
        return FetchResult(alias, [a], 0, 2, 0, 0.0, failed=[dict(b.labels)])

    daemon.fetch = b_failed
    daemon.retrain()
    assert daemon.states["rate"].meta["unfitted"] == [b.key]
    daemon.load()  # a restart reads it from the store
    assert daemon.states["rate"].meta["unfitted"] == [b.key]

    source = daemon.fetch = FakeSource([a, b])
    daemon.discover()
    state = daemon.states["rate"]
    assert "unfitted" not in state.meta and source.calls == 2  # present, then the refit of b alone
    assert next(x for x in state.series if x.key == b.key).meta["fitted_at"] > old_b


def test_a_source_that_returns_no_series_leaves_the_baseline_as_it_was_and_due(offline_daemon, caplog) -> None:
    import dataclasses

    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    daemon.retrain()
    state = daemon.states["rate"]  # as if fitted under an older config: due
    before = daemon.states["rate"] = dataclasses.replace(state, meta={**state.meta, "fingerprint": "older"})
    assert daemon.due("rate", before.fitted_at + 60)
    daemon.fetch = FakeSource([])
    with caplog.at_level(logging.WARNING, logger="smartmetrics.app.retrain"):
        daemon.retrain()
    assert daemon.states["rate"] is before and daemon.due("rate", before.fitted_at + 60)  # a restart retries
    assert "returned none of its 1 series" in caplog.text


def test_retrains_never_overlap(offline_daemon) -> None:
    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    with daemon._retrain_lock:
        assert daemon.retrain() == []
        daemon.discover()
    assert daemon.fetch.calls == 0
    assert len(daemon.retrain()) == 1


def test_a_bad_reloaded_config_is_rejected_and_the_old_one_kept(offline_daemon) -> None:
    daemon = offline_daemon
    before = daemon.config
    Path(daemon.config_path).write_text("sources: {prom: {url: 'http://x'}}\nbaselines: {rate: {expr: up, step: 5x}}\n")
    assert daemon.reload() is False
    assert daemon.config is before


def test_due_when_never_fitted_stale_or_config_changed(offline_daemon) -> None:
    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    now = time.time()
    assert daemon.due("rate", now)
    daemon.retrain()
    assert not daemon.due("rate", now + 60)
    assert daemon.due("rate", now + daemon.config.baselines["rate"].horizon + 1)
    changed = daemon.config.baselines["rate"].model_copy(update={"expr": "sm_rate{job='api'}"})
    daemon.config = daemon.config.model_copy(update={"baselines": {"rate": changed}})
    assert daemon.due("rate", now + 60)


def test_a_daily_retrain_keeps_each_series_classification_across_a_restart_until_the_config_changes(
        offline_daemon) -> None:
    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    daemon.retrain()
    assert daemon.states["rate"].series[0].meta["curve_type"] == "stable"
    # what the last fit said, changed on disk, so that keeping it is told apart from classifying again
    state = daemon.states["rate"]
    state.series[0].meta["classification"]["curve_type"] = "noisy"
    save_baseline(daemon.config.store.path, state)

    restarted = offline(daemon.config_path)
    restarted.fetch = daemon.fetch
    restarted.retrain()
    assert restarted.states["rate"].series[0].meta["curve_type"] == "noisy"  # kept, read back from the store
    from smartmetrics.app.retrain import retrain_baseline  # `smartmetrics fit --reclassify`

    fresh = retrain_baseline(restarted.config, "rate", restarted.states["rate"], None, time.time(),
                             fetch=restarted.fetch, reclassify=True)
    assert fresh.state is not None and fresh.state.series[0].meta["curve_type"] == "stable"

    changed = restarted.config.baselines["rate"].model_copy(update={"sensitivity": "low"})
    restarted.config = restarted.config.model_copy(update={"baselines": {"rate": changed}})
    restarted.retrain()
    assert restarted.states["rate"].series[0].meta["curve_type"] == "stable"  # a new fit config: classified again
    restarted.stop = lambda: None


class MarkedSource:
    """A baseline's series and a release-marker series, told apart by the query's expression."""

    def __init__(self, series: list, markers: list) -> None:
        self.series, self.markers = series, markers

    def __call__(self, config, alias: str, end: float | None = None, **_: object):
        from smartmetrics.adapters.source import FetchResult

        found = self.markers if config.baselines[alias].expr.startswith("changes(") else self.series
        return FetchResult(alias=alias, series=list(found), dropped=0, requests=1, points=0, seconds=0.0)


def level_history(instance: str, start: float, stop: float, jump_at: float | None = None):
    from smartmetrics.engine.series import Series

    t = np.arange(align_down(start, 300), stop, 300, dtype=np.int64)
    values = 100 + np.random.default_rng(len(instance)).normal(0, 1, len(t))
    if jump_at is not None:
        values[t >= jump_at] += 50
    return Series({"instance": instance, "job": "api"}, t, values, 300)


def marker(deployment: str, at: float, now: float):
    from smartmetrics.engine.series import Series

    t = np.arange(align_down(now - 6 * 3600, 300), now, 300, dtype=np.int64)
    values = np.where((t >= at) & (t < at + 600), 1.0, np.nan)  # `changes(...[5m]) > 0`: present for two steps
    return Series({"instance": deployment}, t, values, 300)


def daemon_with_releases(tmp_path: Path):
    """A loaded daemon fitting in-process, its baseline `rate` reading releases from a marker query."""

    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    raw = yaml.safe_load(config.read_text())
    raw["baselines"]["rate"]["releases"] = {"expr": "changes(deploy_generation[5m]) > 0", "match": ["instance"]}
    config.write_text(yaml.safe_dump(raw))
    daemon = offline(str(config))
    return config, daemon


def test_a_retrain_is_told_the_releases_in_its_history(tmp_path: Path) -> None:
    _, daemon = daemon_with_releases(tmp_path)
    now = align_down(time.time(), 300)
    settled, settling = now - 90 * 60, now - 600  # too recent for the level-shift finder, both
    daemon.fetch = MarkedSource(
        [level_history("a", now - 3 * 86400, now + 1, settled), level_history("b", now - 3 * 86400, now + 1, settling),
         level_history("c", now - 3 * 86400, now + 1, settled)],
        [marker("a", settled, now + 1), marker("b", settling, now + 1)],
    )
    outcome = daemon._retrain_one("rate", now)
    assert outcome.fitted == 3 and outcome.release_error is None
    served = {labels["instance"]: (yhat, lo, hi) for labels, yhat, lo, hi in daemon._snapshot.values_at(now + 60)}
    assert set(served) == {"a", "c"}  # "b" withdrawn at once, until its release has settled
    assert served["a"][1] < 150 < served["a"][2] and served["a"][1] > 120  # the fit learned the new level
    assert served["c"][1] < 100  # the same jump without a release: a band wide enough for both levels
    bands = {b.labels["instance"]: b for b in daemon.states["rate"].series}
    assert bands["a"].meta["training"]["releases"][0]["first"] == settled
    assert bands["b"].meta["release"]["until"] == settling + 1800


def test_a_release_withdraws_the_band_then_re_anchors_it_and_survives_a_restart(tmp_path: Path) -> None:
    config, daemon = daemon_with_releases(tmp_path)
    now = time.time()
    fitted = now - 3 * 3600  # the last retrain read data up to three hours ago
    daemon.fetch = MarkedSource([level_history(i, fitted - 3 * 86400, fitted) for i in "abc"], [])
    outcome = daemon._retrain_one("rate", fitted)
    assert outcome.fitted == 3

    early, late = align_down(now - 3600, 300), align_down(now - 600, 300)  # "a" settled, "b" settling
    daemon.fetch = MarkedSource(
        [level_history("a", fitted - 86400, now, early), level_history("b", fitted - 86400, now, late),
         level_history("c", fitted - 86400, now)],
        [marker("a", early, now), marker("b", late, now), marker("other", early, now)],
    )
    daemon.watch_releases()
    served = {labels["instance"]: (yhat, lo, hi) for labels, yhat, lo, hi in daemon._snapshot.values_at(now)}
    assert set(served) == {"a", "c"}  # "b" is withdrawn while its release settles
    assert 145 < served["a"][0] < 155 and served["a"][1] < 150 < served["a"][2]  # re-anchored on the new level
    assert 95 < served["c"][0] < 105  # no release for "c"
    assert daemon.metrics.settling.labels("rate")._value.get() == 1
    assert daemon.metrics.releases.labels("rate")._value.get() == 3

    restarted = offline(str(config))  # the store holds the re-anchored and the withdrawn bands
    again = {labels["instance"]: yhat for labels, yhat, _, _ in restarted._snapshot.values_at(now)}
    assert set(again) == {"a", "c"} and abs(again["a"] - served["a"][0]) < 1e-3
    restarted.fetch = daemon.fetch
    restarted.watch_releases()  # nothing new: the same bands, not moved twice
    assert {labels["instance"]: yhat for labels, yhat, _, _ in restarted._snapshot.values_at(now)} == again
    later = now + 1800  # half an hour on, "b" has settled too
    restarted.fetch = MarkedSource([level_history("b", fitted - 86400, later, late)], [marker("b", late, later)])
    restarted._releases_one("rate", restarted.config.baselines["rate"], later)
    served = {labels["instance"]: yhat for labels, yhat, _, _ in restarted._snapshot.values_at(later)}
    assert set(served) == {"a", "b", "c"} and 145 < served["b"] < 155


def test_a_band_follows_a_level_its_series_stayed_at_and_survives_a_restart(offline_daemon) -> None:
    daemon = offline_daemon
    now = time.time()
    fitted = now - 3 * 3600  # the last retrain read data up to three hours ago
    daemon.fetch = FakeSource([level_history(i, fitted - 3 * 86400, fitted) for i in "abc"])
    assert daemon._retrain_one("rate", fitted).fitted == 3

    moved, recent = align_down(now - 2 * 3600, 300), align_down(now - 1800, 300)  # "a" for two hours, "b" for 30m
    daemon.fetch = FakeSource([level_history("a", fitted - 86400, now, moved),
                               level_history("b", fitted - 86400, now, recent),
                               level_history("c", fitted - 86400, now)])
    daemon.follow_levels()
    served = {labels["instance"]: (yhat, lo, hi) for labels, yhat, lo, hi in daemon._snapshot.values_at(now)}
    assert 145 < served["a"][0] < 155 and served["a"][1] < 100 and served["a"][2] > 150  # both levels inside
    assert 95 < served["b"][0] < 105 and served["b"][2] < 150  # half an hour is not a new level yet
    assert 95 < served["c"][0] < 105
    assert daemon.metrics.follows.labels("rate")._value.get() == 1

    restarted = offline(daemon.config_path)  # the store holds the followed band and its record
    again = {labels["instance"]: yhat for labels, yhat, _, _ in restarted._snapshot.values_at(now)}
    assert abs(again["a"] - served["a"][0]) < 1e-3
    restarted.fetch = daemon.fetch
    restarted.follow_levels()  # the same data: not followed twice
    assert {labels["instance"]: yhat for labels, yhat, _, _ in restarted._snapshot.values_at(now)} == again

    later = now + 2 * 3600  # "a" went back to 100 at `now` (a rollback) and has stayed there
    back = level_history("a", fitted - 86400, later, moved)
    back.values[back.timestamps >= now] -= 50
    restarted.fetch = FakeSource([back])
    restarted._follow_one("rate", restarted.config.baselines["rate"], later)
    served = {labels["instance"]: (yhat, lo, hi) for labels, yhat, lo, hi in restarted._snapshot.values_at(later)}
    assert 95 < served["a"][0] < 105 and served["a"][2] > 150  # yhat is back; the band still covers both
    assert restarted.metrics.follows.labels("rate")._value.get() == 0  # going back is not a new level


def test_follow_null_leaves_the_bands_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    raw = yaml.safe_load(config.read_text())
    raw["baselines"]["rate"]["follow"] = None
    config.write_text(yaml.safe_dump(raw))
    daemon = offline(str(config))
    now = time.time()
    daemon.fetch = FakeSource([level_history("a", now - 3 * 3600 - 3 * 86400, now - 3 * 3600)])
    daemon._retrain_one("rate", now - 3 * 3600)
    daemon.fetch = FakeSource([level_history("a", now - 86400, now, align_down(now - 2 * 3600, 300))])
    daemon.follow_levels()
    ((_, yhat, _, _),) = daemon._snapshot.values_at(now)
    assert 95 < yhat < 105


def test_realised_coverage_is_tallied_exported_kept_across_a_restart_and_reset_by_a_retrain(offline_daemon) -> None:
    daemon = offline_daemon
    now = time.time()
    fitted = align_down(now - 4 * 3600, 300)
    daemon.fetch = FakeSource([level_history(i, fitted - 3 * 86400, fitted) for i in "ab"])
    assert daemon._retrain_one("rate", fitted).fitted == 2
    assert b"smartmetrics_band_coverage{" not in daemon.metrics_text()  # nothing seen yet: nothing claimed

    jumped = align_down(now - 3600, 300)  # "b" leaves its band for the last hour; "a" stays inside
    live = [level_history("a", fitted - 3600, now), level_history("b", fitted - 3600, now, jumped)]
    daemon.fetch = FakeSource(live)
    daemon.check_coverage()
    text = daemon.metrics_text().decode()
    coverage = {line.split('instance="')[1][0]: float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("smartmetrics_band_coverage{")}
    t = live[0].timestamps
    points, out = int(np.sum(t >= fitted)), int(np.sum(t >= jumped))  # after the last point the fit read
    assert coverage["a"] > 0.95
    assert coverage["b"] == pytest.approx(1 - out / points)  # the last hour's points out of about 48

    daemon.check_coverage()  # the same points again: counted once
    restarted = offline(daemon.config_path)  # the tally is stored with the band
    again = {b.labels["instance"]: b.meta["realised"] for b in restarted.states["rate"].series}
    assert again["b"]["points"] == points and again["b"]["inside"] == points - out
    restarted.fetch = FakeSource([level_history(i, fitted - 3 * 86400, now) for i in "ab"])
    restarted._retrain_one("rate", now)  # fresh bands: a fresh tally
    assert all("realised" not in b.meta for b in restarted.states["rate"].series)


def test_a_corrupt_tally_is_ignored_not_exported() -> None:
    from smartmetrics.adapters.exporter import constant_values
    from smartmetrics.engine.realised import realised_coverage

    for bad in ({"points": 10, "inside": 11}, {"points": "x"}, [1, 2], {"points": 0, "inside": 0}, None):
        assert realised_coverage({"realised": bad}) is None
        assert constant_values({"realised": bad})[-1] is None
    assert realised_coverage({"realised": {"points": 4, "inside": 3}}) == 0.75


def test_a_series_with_a_handful_of_points_gets_its_band_as_soon_as_discovery_sees_enough(offline_daemon) -> None:
    from smartmetrics.engine.series import Series

    daemon = offline_daemon
    full = series_for("young", 4)
    sparse = np.full(len(full.values), np.nan)
    sparse[::80] = full.values[::80]  # eleven scrapes in three days: too few to say a range
    steady = Series({"instance": "a", "job": "api"}, full.timestamps, full.values + 5, full.step)
    source = FakeSource([steady, Series(full.labels, full.timestamps, sparse, full.step)])
    daemon.fetch = source
    assert daemon.retrain()[0].fitted == 2
    assert [labels["instance"] for labels, *_ in daemon._snapshot.values_at(full.end + full.step)] == ["a"]
    source.series = [steady, full]  # the next discovery pass sees its history
    daemon.discover()
    served = {labels["instance"] for labels, *_ in daemon._snapshot.values_at(full.end + full.step)}
    assert served == {"a", "young"}


def test_a_new_series_learns_for_a_day_then_discovery_gives_it_its_band(offline_daemon) -> None:
    """A series that appeared two hours before the retrain: fitted, but no band served (`min_history`,
    a day by default) and counted as learning. Discovery leaves it alone until its day has passed
    (no full fetch for it meanwhile), then fits it and serves its band."""
    from smartmetrics.app.selfmetrics import series_kinds
    from smartmetrics.engine.series import Series

    daemon = offline_daemon
    old, full = series_for("a", 1), series_for("b", 2)
    step, t = full.step, full.timestamps
    first = int(t[-25 * 3600 // step])

    def since(stop: int) -> Series:
        return Series(full.labels, t, np.where((t >= first) & (t < stop), full.values, np.nan), step)

    source = FakeSource([old, since(first + 2 * 3600)])
    daemon.fetch = source
    assert daemon.retrain()[0].fitted == 2
    band = next(b for b in daemon.states["rate"].series if b.labels["instance"] == "b")
    assert band.meta["training"]["learning_until"] == first + 86400
    assert ("learning", band.meta["model"]) in series_kinds(daemon.states["rate"].series)
    served = lambda: {labels["instance"] for labels, *_ in daemon._snapshot.values_at(full.end + step)}  # noqa: E731
    assert served() == set()
    baseline, calls = daemon.config.baselines["rate"], source.calls
    daemon._discover_one("rate", baseline, first + 3 * 3600)
    assert source.calls == calls + 1  # the listing of what is present, no fetch of history to fit
    source.series = [old, since(first + 86400 + step)]
    daemon._discover_one("rate", baseline, first + 86400 + step)
    assert source.calls == calls + 3 and served() == {"b"}


def test_discovery_refits_a_young_band_each_time_its_history_doubles() -> None:
    """With a `min_history` under a day a series gets its band from its first hours; discovery fits it
    again as its history doubles (2h -> 4h -> ...), and leaves a day-old band to the daily retrain."""
    from smartmetrics.app.daemon import _due
    from smartmetrics.engine.state import SeriesBand

    def band(training: dict, end: int) -> SeriesBand:
        return SeriesBand({}, end, 300, np.zeros(2), np.zeros(2), np.zeros(2),
                          meta={"training": training, "data_end": end})

    window = 14 * 86400
    young = band({"history": 7200}, 100_000)
    assert not _due(young, 100_000 + 7199, window) and _due(young, 100_000 + 7200, window)
    assert not _due(band({"history": 86400}, 100_000), 100_000 + 5 * 86400, window)
    assert not _due(band({}, 100_000), 100_000 + 5 * 86400, window)  # stored before `history` was recorded
    learning = band({"withheld": "learning: ...", "learning_until": 150_000.0}, 100_000)  # as JSON gives it
    assert not _due(learning, 149_999, window) and _due(learning, 150_000, window)
    assert _due(band({"withheld": "only 11 points"}, 100_000), 100_001, window)  # too few points: every discovery
    # a baseline that reads 6h: a fit has at most 6h, so a band from 3h on is grown, not refitted for ever
    assert _due(young, 100_000 + 7200, 6 * 3600)
    assert not _due(band({"history": 6 * 3600}, 100_000), 100_000 + 86400, 6 * 3600)
    assert not _due(band({"history": 3 * 3600}, 100_000), 100_000 + 86400, 6 * 3600)


def test_bad_source_values_never_replace_good_bands(offline_daemon) -> None:
    from smartmetrics.engine.series import Series

    daemon = offline_daemon
    good = [series_for(i, n) for n, i in enumerate("ab")]
    daemon.fetch = FakeSource(good)
    assert daemon.retrain()[0].fitted == 2
    before = {b.key: b.yhat.copy() for b in daemon.states["rate"].series}
    nan = Series(good[0].labels, good[0].timestamps, np.full(len(good[0].values), np.nan), good[0].step)
    flat = Series(good[1].labels, good[1].timestamps, good[1].values * 0 + 1e-300, good[1].step)  # absurdly tiny
    daemon.fetch = FakeSource([nan, flat])
    outcome = daemon.retrain()[0]
    assert outcome.failures["NoData"] == 1  # only gaps: nothing fitted, counted
    kept = {b.key: b for b in daemon.states["rate"].series}
    assert np.array_equal(kept[nan.key].yhat, before[nan.key])  # the good band stays
    assert daemon.metrics.fits.labels("rate", "failed")._value.get() >= 1


def test_a_fit_whose_band_is_not_sane_is_counted_and_the_old_band_stays(offline_daemon, monkeypatch) -> None:
    from smartmetrics.engine import batch

    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    assert daemon.retrain()[0].fitted == 1
    before = daemon.states["rate"].series[0].upper.copy()
    fit = batch.fit_series

    def broken(series, settings, releases=(), previous=None):
        fitted = fit(series, settings, releases)
        fitted.upper[:] = np.inf  # what values of 1e300 once made
        return fitted

    monkeypatch.setattr(batch, "fit_series", broken)
    outcome = daemon.retrain()[0]
    assert outcome.fitted == 0 and outcome.failures["InsaneBand"] == 1
    assert np.array_equal(daemon.states["rate"].series[0].upper, before)
    kept = daemon.states["rate"].series[0]
    assert len(list(daemon._snapshot.values_at(kept.start + kept.step))) == 1  # still served


def test_one_baseline_failing_in_any_way_never_stops_the_others(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    doc = yaml.safe_load(config.read_text())
    doc["baselines"]["other"] = {"expr": "sm_other", "step": "5m", "history": "3d"}
    config.write_text(yaml.safe_dump(doc))
    daemon = offline(str(config))
    good = FakeSource([series_for("a", 1)])

    def fetch(config, alias, end=None, **kwargs):
        if alias == "rate":
            raise TypeError("'list' object has no attribute 'get'")  # a bug or an answer nobody foresaw
        return good(config, alias, end, **kwargs)

    daemon.fetch = fetch
    outcomes = {o.alias: o for o in daemon.retrain()}
    assert "TypeError" in outcomes["rate"].error and outcomes["other"].fitted == 1
    assert "other" in daemon.states and "rate" not in daemon.states


@pytest.mark.parametrize("query,why", [
    ({"start": "NaN"}, "not a time"), ({"start": "inf"}, "not a time"), ({"start": "-inf"}, "not a time"),
    ({"start": "1e308"}, "not a time"), ({"start": "-1e308"}, "not a time"), ({"start": "0"}, "at most 35"),
    ({"start": "yesterday"}, "neither Unix seconds nor RFC 3339"), ({"end": "2026-01-01T00:00:00"}, "time zone"),
    ({"start": "1700000000", "end": "1699999999"}, "before start"),
    ({"match": '{a=~"(a"}'}, "bad regular expression"), ({"match": "{" + 'a="b",' * 2000 + "}"}, "at most"),
])
def test_series_api_rejects_what_could_hurt_it_with_a_reason(offline_daemon, query: dict, why: str) -> None:
    daemon = offline_daemon
    daemon.fetch = source = FakeSource([series_for("a", 1)])
    daemon.retrain()
    calls = source.calls
    status, body = daemon.series_json("rate", query)
    assert status == 400 and why in body["error"], body
    assert source.calls == calls  # nothing was asked of the source


def test_series_api_takes_rfc3339_and_a_slow_regex_costs_nothing(offline_daemon) -> None:
    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    daemon.retrain()
    band = daemon.states["rate"].series[0]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(band.start))
    status, body = daemon.series_json("rate", {"start": iso, "end": str(band.end)})
    assert status == 200 and any(line["data"] for line in body["data"])
    started = time.monotonic()
    status, _ = daemon.series_json("rate", {"match": '{instance=~"(.*){11}!"}'})  # 29 s with a backtracking engine
    assert status == 200 and time.monotonic() - started < 1.0


def test_an_unwritable_store_is_counted_and_the_bands_are_served_from_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")  # every write fails, even as root
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), blocker / "models")
    daemon = offline(str(config))
    daemon.fetch = FakeSource([series_for("a", 1)])
    assert daemon.retrain()[0].fitted == 1
    assert daemon.metrics.store_errors.labels("write")._value.get() == 1
    band = daemon.states["rate"].series[0]
    assert len(list(daemon._snapshot.values_at(band.start + band.step))) == 1


def test_series_api_serves_the_bands_with_a_warning_when_the_source_is_down(offline_daemon) -> None:
    from smartmetrics.adapters.source import SourceError

    daemon = offline_daemon
    daemon.fetch = FakeSource([series_for("a", 1)])
    daemon.retrain()
    band = daemon.states["rate"].series[0]

    def down(config, alias, end=None, **_):
        raise SourceError("cannot reach http://127.0.0.1:9 after 1 attempt: connection refused", alias)

    daemon.fetch = down
    status, body = daemon.series_json("rate", {"start": str(band.start - 3600), "end": str(band.end)})
    assert status == 200 and "connection refused" in body["warnings"][0]
    assert [line["name"].rsplit(" ", 1)[1] for line in body["data"]] == ["yhat", "yhat_lower", "yhat_upper"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 KiB tmpfs: a store on it fills up (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


@pytest.mark.slow
def test_a_full_disk_keeps_the_last_good_file_and_serves_from_memory(tiny_disk: Path, tmp_path: Path) -> None:
    from smartmetrics.engine.series import Series

    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tiny_disk / "models")
    daemon = offline(str(config))
    daemon.fetch = FakeSource([series_for("a", 1)])
    assert daemon.retrain()[0].fitted == 1  # one series fits on the disk
    stored = (tiny_disk / "models" / "rate" / "state.npz").read_bytes()
    many = [series_for("a", 1)] + [Series({"instance": f"x{i}", "job": "api"}, s.timestamps, s.values, s.step)
                                   for i, s in enumerate([series_for("b", 2)] * 12)]
    daemon.fetch = FakeSource(many)
    assert daemon.retrain()[0].fitted == 13  # thirteen do not: the write fails with ENOSPC
    assert daemon.metrics.store_errors.labels("write")._value.get() >= 1
    assert (tiny_disk / "models" / "rate" / "state.npz").read_bytes() == stored  # the last good file, intact
    assert not list((tiny_disk / "models" / "rate").glob(".state-*"))  # no half-written temp file left
    assert len(daemon.states["rate"].series) == 13  # served from memory


def test_a_restart_from_the_store_restores_the_self_metrics_the_dashboards_read(tmp_path: Path) -> None:
    """The fleet dashboard and the README's staleness alert read these; without them they stay empty
    (and the alert cannot fire) until the next retrain, up to a day after a restart."""
    y = np.ones(4)
    meta = [{"curve_type": "daily", "model": "profile"}, {"curve_type": "daily", "model": "profile"},
            {"curve_type": "flat", "model": "level", "release": {"settled": False}}]
    bands = tuple(SeriesBand({"instance": str(i)}, 0, 60, y, y, y, meta=m) for i, m in enumerate(meta))
    save_baseline(tmp_path / "models", BaselineState("rate", 1_700_000_000.0, bands))
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    daemon = offline(config)
    value = daemon.metrics.registry.get_sample_value
    assert value("smartmetrics_last_successful_retrain_timestamp_seconds", {"baseline": "rate"}) == 1_700_000_000.0
    assert value("smartmetrics_series", {"baseline": "rate", "curve_type": "daily", "model": "profile"}) == 2
    assert value("smartmetrics_series", {"baseline": "rate", "curve_type": "flat", "model": "level"}) == 1
    assert value("smartmetrics_series_settling", {"baseline": "rate"}) == 1
    for result in ("ok", "failed"):  # counters exist from the start (at 0), so rate() sees the first fit
        assert value("smartmetrics_fits_total", {"baseline": "rate", "result": result}) == 0
    assert value("smartmetrics_source_request_errors_total", {"baseline": "rate", "source": "prom"}) == 0
    assert value("smartmetrics_follows_total", {"baseline": "rate"}) == 0
    assert value("smartmetrics_releases_total", {"baseline": "rate"}) == 0


def test_a_baseline_with_ahead_exports_its_forecast_ahead_and_a_reload_follows_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    raw = yaml.safe_load(config.read_text())
    raw["baselines"]["rate"]["ahead"] = ["15m"]
    config.write_text(yaml.safe_dump(raw))
    now = align_down(time.time(), 60)
    y = np.arange(200, dtype=float)
    band = SeriesBand({"instance": "a"}, now - 600, 60, y, y - 1, y + 2)
    save_baseline(tmp_path / "models", BaselineState("rate", now, (band,)))
    daemon = offline(str(config))
    daemon.stop = lambda: None
    text = daemon.metrics_text().decode()
    assert 'smartmetrics_yhat_ahead{baseline="rate",instance="a",ahead="15m"} ' in text
    assert 'smartmetrics_yhat_upper_ahead{baseline="rate",instance="a",ahead="15m"} ' in text
    del raw["baselines"]["rate"]["ahead"]
    config.write_text(yaml.safe_dump(raw))
    daemon._schedule = lambda: None  # nothing was started
    daemon._scheduler.add_job = lambda *a, **k: None
    assert daemon.reload()
    assert "smartmetrics_yhat_ahead" not in daemon.metrics_text().decode()


@pytest.mark.parametrize(("cron", "weekday"), [("0 3 * * 0", 6), ("0 3 * * 7", 6), ("0 3 * * 1", 0), ("0 3 * * sat", 5)])
def test_the_retrain_schedule_reads_the_day_of_week_as_cron_does(tmp_path: Path, cron: str, weekday: int) -> None:
    from datetime import datetime, timezone

    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    raw = yaml.safe_load(config.read_text())
    raw["schedule"]["retrain"] = cron  # APScheduler 3 alone reads 0 as Monday (agronholm/apscheduler#286)
    config.write_text(yaml.safe_dump(raw))
    daemon = offline(str(config))
    daemon._schedule()
    wednesday = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
    fires = daemon._scheduler.get_job("retrain").trigger.get_next_fire_time(None, wednesday)
    assert (fires.weekday(), fires.hour, fires.minute) == (weekday, 3, 0)
    assert wednesday < fires <= wednesday.replace(day=11)


class EventSource:
    """A baseline's series, and calendar-event exprs whose last point is `on[expr]` (0 before it);
    `failing` makes the event reads raise as an unreachable source does."""

    def __init__(self, series: list, on: dict[str, float]) -> None:
        self.series, self.on, self.failing = series, on, False

    def __call__(self, config, alias: str, end: float | None = None, **_: object):
        from smartmetrics.adapters.source import FetchResult, SourceError
        from smartmetrics.engine.series import Series

        baseline = config.baselines[alias]
        if baseline.expr not in self.on:
            return FetchResult(alias=alias, series=list(self.series), dropped=0, requests=1, points=0, seconds=0.0)
        if self.failing:
            raise SourceError("connection refused", alias)
        step = int(baseline.step)
        t = np.arange(align_down(end - baseline.history, step), align_down(end, step) + 1, step, dtype=np.int64)
        values = np.where(t == t[-1], self.on[baseline.expr], 0.0)
        return FetchResult(alias=alias, series=[Series({}, t, values, step)], dropped=0, requests=1, points=0,
                           seconds=0.0)


def daemon_with_events(tmp_path: Path, prom_url: str = "http://127.0.0.1:9"):
    """A loaded daemon fitting in-process whose baseline `rate` has a PromQL maintenance and a PromQL
    expected change (widen 3, up)."""
    config = write_config(tmp_path / "c.yaml", prom_url, free_port(), tmp_path / "models")
    raw = yaml.safe_load(config.read_text())
    raw["baselines"]["rate"]["calendar"] = {"events": [
        {"name": "upgrade", "expr": "upgrade_on"},
        {"name": "sale", "expr": "sale_on", "kind": "expected_change", "widen": 3, "direction": "up"}]}
    config.write_text(yaml.safe_dump(raw))
    return offline(str(config))


def test_a_promql_event_withdraws_or_widens_the_served_band_while_its_expr_is_on(tmp_path: Path) -> None:
    daemon = daemon_with_events(tmp_path)
    now = time.time()
    source = EventSource([level_history(i, now - 3 * 86400, now) for i in "abc"], {"upgrade_on": 0, "sale_on": 0})
    daemon.fetch = source
    assert daemon.retrain()[0].fitted == 3
    daemon._schedule()  # read every minute, the first time at once
    assert daemon._scheduler.get_job("events").trigger.interval.total_seconds() == 60

    def served() -> dict[str, tuple[float, float, float]]:
        return {labels["instance"]: tuple(v) for labels, *v in daemon._snapshot.values_at(now + 60)}

    def active(event: str, kind: str) -> float | None:
        daemon.metrics_text()
        return daemon.metrics.registry.get_sample_value(
            "smartmetrics_calendar_event_active", {"baseline": "rate", "event": event, "kind": kind})

    usual = served()
    assert set(usual) == {"a", "b", "c"} and active("upgrade", "maintenance") == 0
    source.on["upgrade_on"] = 1.0
    daemon.watch_events()  # the maintenance is on: no band, so no alert can fire
    assert served() == {} and active("upgrade", "maintenance") == 1 and active("sale", "expected_change") == 0
    assert b"smartmetrics_yhat{" not in daemon.metrics_text()
    daemon._publish()  # as a retrain or a follow publishes: the event still applies
    assert served() == {}

    errors = daemon.metrics.source_errors.labels("prom", "rate")
    before = errors._value.get()
    source.failing = True
    daemon.watch_events()  # the expr cannot be read: the last known state stays, counted
    assert served() == {} and errors._value.get() == before + 1 and active("upgrade", "maintenance") == 1

    source.failing, source.on = False, {"upgrade_on": 0.0, "sale_on": 2.0}
    daemon.watch_events()  # the expected change: the upper edge three times as far from yhat, the lower as it was
    widened = served()
    assert set(widened) == {"a", "b", "c"} and active("sale", "expected_change") == 1
    for key, (yhat, lower, upper) in widened.items():
        assert abs(yhat - usual[key][0]) < 1e-4 and abs(lower - usual[key][1]) < 1e-4
        assert abs((upper - yhat) - 3 * (usual[key][2] - usual[key][0])) < 1e-3
    source.on["sale_on"] = 0.0
    daemon.watch_events()
    assert served() == usual and active("sale", "expected_change") == 0


def test_a_promql_maintenance_read_from_prometheus_withdraws_the_served_band(
        tmp_path: Path, prometheus_binaries: tuple[str, str]) -> None:
    end = align_down(time.time(), 60)
    t = np.arange(end - 3600, end + 1, 60, dtype=np.int64)
    markers = [MetricSeries("upgrade_on", {"team": "db"}, t, np.zeros(len(t))),
               MetricSeries("upgrade_on", {"team": "ml"}, t, (t >= end - 600).astype(float)),  # on for 10 min
               MetricSeries("sale_on", {}, t, np.zeros(len(t)))]
    with LocalPrometheus(history(end, days=2) + markers) as prom:
        daemon = daemon_with_events(tmp_path, prom.url)
        assert daemon.retrain()[0].fitted == 3
        now = time.time()
        assert len(list(daemon._snapshot.values_at(now))) == 3
        daemon.watch_events()
        assert list(daemon._snapshot.values_at(now)) == [] and daemon.events.active("rate") == {"upgrade"}


def test_discovery_after_a_restart_counts_the_stored_series_as_seen_at_the_load(tmp_path: Path) -> None:
    """The last-seen table is built at the first discovery, not at start-up (it costs a third of a second
    at 100k series), with the same times: a stored series gone from the source expires `stale_after`
    after the load, one still there stays."""
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", free_port(), tmp_path / "models")
    first = offline(str(config))
    first.fetch = FakeSource([series_for("a", 1), series_for("b", 2)])
    assert first.retrain()[0].fitted == 2
    daemon = offline(str(config))  # the restart
    assert daemon.last_seen == {} and len(daemon.states["rate"].series) == 2
    daemon.fetch = FakeSource([series_for("b", 2)])  # "a" is gone
    daemon.discover()
    assert sorted(b.labels["instance"] for b in daemon.states["rate"].series) == ["a", "b"]  # not yet stale
    assert daemon.last_seen["rate"][series_for("a", 1).key] == daemon._loaded_at
    daemon.last_seen["rate"][series_for("a", 1).key] -= daemon.config.schedule.stale_after + 1  # loaded long ago
    daemon.discover()
    assert [b.labels["instance"] for b in daemon.states["rate"].series] == ["b"]


def test_the_load_leaves_the_collector_on_and_what_it_loaded_frozen(offline_daemon) -> None:
    import gc

    try:
        assert gc.isenabled() and gc.get_freeze_count() > 0  # later collections skip the loaded bands
    finally:
        gc.unfreeze()
