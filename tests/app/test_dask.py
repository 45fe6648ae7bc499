"""Fits on a real Dask cluster (a `dask scheduler` and `dask worker` processes on 127.0.0.1): the same
bands as the local pool to the last bit, a worker lost mid-retrain costs nothing, and a scheduler that
is gone or unreachable is a clear, prompt error that leaves the previous bands in place."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("distributed")

from smartmetrics.app.fitstream import fit_all  # noqa: E402
from smartmetrics.app.promlocal import free_port  # noqa: E402
from smartmetrics.app.workers import DaskPool, LocalPool, PoolError  # noqa: E402
from smartmetrics.benchmarks.dask_fit import dask_cluster, fingerprints, identical  # noqa: E402
from smartmetrics.engine.ensemble import FitSettings  # noqa: E402
from smartmetrics.engine.series import Series  # noqa: E402
from smartmetrics.evaluation.synth import make_series  # noqa: E402

pytestmark = pytest.mark.slow
SETTINGS = FitSettings(horizon=86400)
FAMILIES = ("stable", "seasonal", "level_shift", "intermittent", "trending", "noisy", "regime")


def corpus(n: int, days: int = 7) -> list[Series]:
    out = []
    for i in range(n):
        s = make_series(FAMILIES[i % len(FAMILIES)], days=days, seed=i).series
        out.append(Series({"series": str(i), "family": FAMILIES[i % len(FAMILIES)]}, s.timestamps, s.values, s.step))
    return out


def fit_in_background(series: list[Series], pool) -> tuple[threading.Thread, dict]:
    box: dict = {"done": []}

    def run() -> None:
        box["result"] = fit_all(series, SETTINGS, pool, on_done=lambda: box["done"].append(time.monotonic()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_for_first_fit(box: dict) -> None:
    deadline = time.monotonic() + 120
    while not box["done"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box["done"], "no batch finished"


def kill_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_fits_on_a_dask_cluster_give_the_local_pools_bands_to_the_bit() -> None:
    series = corpus(18)
    local = LocalPool(2)
    try:
        expected, failures = fit_all(series, SETTINGS, local)
    finally:
        local.close()
    assert not failures and len(expected) == len(series)
    with dask_cluster(2) as (address, _):
        pool = DaskPool(address)
        try:
            assert pool.slots() == 1  # not connected yet: nothing sent
            fitted, failures = fit_all(series, SETTINGS, pool)
            assert pool.slots() == 2
        finally:
            pool.close()
    assert not failures and len(fitted) == len(series)
    assert identical(expected, fitted)
    assert len(fingerprints(fitted)) == len(series)


def test_a_worker_killed_mid_retrain_has_its_batches_rerun_on_the_others() -> None:
    series = corpus(24)
    with dask_cluster(2) as (address, workers):
        pool = DaskPool(address)
        try:
            thread, box = fit_in_background(series, pool)
            wait_for_first_fit(box)
            kill_group(workers[0])
            thread.join(timeout=300)
            assert not thread.is_alive(), "the retrain hung after a worker died"
        finally:
            pool.close()
    fitted, failures = box["result"]
    assert not failures, failures
    assert sorted(f.labels["series"] for f in fitted) == sorted(s.labels["series"] for s in series)


def test_a_scheduler_lost_mid_retrain_ends_the_wait_and_counts_the_pending_series() -> None:
    series = corpus(40)
    with dask_cluster(1) as (address, _):
        pool = DaskPool(address)
        try:
            thread, box = fit_in_background(series, pool)
            wait_for_first_fit(box)
            scheduler = next(p for p in _children_named("scheduler"))
            os.kill(scheduler, signal.SIGKILL)
            killed = time.monotonic()
            thread.join(timeout=60)
            assert not thread.is_alive(), "the retrain hung after the scheduler died"
            assert time.monotonic() - killed < 30
        finally:
            pool.close()
    fitted, failures = box["result"]
    assert len(fitted) + sum(failures.values()) == len(series)  # every series accounted for
    assert failures["PoolLost"] > 0


def test_a_scheduler_port_taken_before_it_binds_is_tried_again_on_another(monkeypatch) -> None:
    import socket

    from smartmetrics.benchmarks import dask_fit

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(dask_fit, "free_port", lambda: next(ports, None) or free_port())
        with dask_cluster(1) as (address, _):
            assert address != f"tcp://127.0.0.1:{taken.getsockname()[1]}"
            pool = DaskPool(address)
            try:
                fitted, failures = fit_all(corpus(2), SETTINGS, pool)
            finally:
                pool.close()
    assert len(fitted) == 2 and not failures


def _children_named(word: str) -> list[int]:
    """Pids of this test's processes whose command line holds `dask` and `word`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"dask") for part in cmd) and word.encode() in cmd:
            pids.append(int(entry.name))
    return pids


def test_an_unreachable_scheduler_is_a_clear_error_and_the_bands_stay(tmp_path: Path) -> None:
    from smartmetrics.app.daemon import Daemon

    address = f"tcp://127.0.0.1:{free_port()}"
    pool = DaskPool(address, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(PoolError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:.*cluster.dask"):
        pool.executor()
    assert time.monotonic() - t0 < 15

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": "http://127.0.0.1:9"}},
        "baselines": {"rate": {"expr": "sm_rate", "step": "5m", "history": "3d"}},
        "store": {"path": str(tmp_path / "models")},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "cluster": {"dask": address, "timeout": "2s"},
    }))
    daemon = Daemon(str(config), workers=1)
    daemon.load()
    series = corpus(2, days=3)
    from smartmetrics.adapters.source import FetchResult

    daemon.fetch = lambda config, alias, end=None, **_: FetchResult(alias, list(series), 0, 1, 0, 0.0)
    inline, daemon._pool = daemon._pool, None  # a first retrain in process: bands to keep
    assert daemon.retrain()[0].fitted == 2
    before = {b.key: b.upper.copy() for b in daemon.states["rate"].series}
    daemon._pool = inline
    outcome = daemon.retrain()[0]
    assert outcome.stage == "cluster" and "cannot reach the Dask scheduler" in (outcome.error or "")
    assert {b.key: b.upper.tolist() for b in daemon.states["rate"].series} == {
        k: v.tolist() for k, v in before.items()}
    assert daemon.metrics.fit_failures.labels("rate", "cluster")._value.get() == 1
    daemon._pool.close()


def test_a_bad_dask_address_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    from smartmetrics.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"cluster\.dask.*not a Dask scheduler address"):
        parse_config({"sources": {"p": {"url": "http://x:9090"}}, "baselines": {"b": {"expr": "up"}},
                      "cluster": {"dask": "scheduler:8786"}})
