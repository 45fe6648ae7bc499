"""The retrain as a pipeline (`app.retrain`, `app.fitstream`): fits start while the fetch goes on and
give the state fetch-then-fit gives; a batch that cannot be fetched costs only its series, which keep
their previous bands; release markers are read once; fetches that know nothing of `on_series` still work."""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import re2

from smartmetrics.adapters.source import FetchResult, fetch_baseline
from smartmetrics.adapters.store import load_baseline, save_baseline
from smartmetrics.app.retrain import retrain_baseline
from smartmetrics.app.workers import FitPool, LocalPool
from smartmetrics.config import parse_config
from smartmetrics.engine.series import Series, align_down

NOW = 1_700_006_400.0
STEP = 300


def history(instance: str, level: float = 100.0) -> Series:
    """3 days at 5 minutes of a noisy daily curve, its own for each instance."""
    t = np.arange(align_down(NOW - 3 * 86400, STEP), align_down(NOW, STEP) + 1, STEP, dtype=np.int64)
    rng = np.random.default_rng(sum(map(ord, instance)))
    values = level + 10 * np.sin(2 * np.pi * (t % 86400) / 86400) + rng.normal(0, 1, len(t))
    return Series({"instance": instance, "job": "api"}, t, values, STEP)


def config_for(tmp_path: Path, **baseline):
    return parse_config({
        "sources": {"main": {"url": "http://prom.test", "retries": 1, "max_samples_per_request": 2000}},
        "baselines": {"b": {"expr": "m", "step": "5m", "history": "3d", **baseline}},
        "store": {"path": str(tmp_path / "models")},
    })


def same_bands(a, b) -> bool:
    bands = {x.key: x for x in a.series}
    return bands.keys() == {x.key for x in b.series} and all(
        np.array_equal(getattr(bands[x.key], c), getattr(x, c), equal_nan=True)
        for x in b.series for c in ("yhat", "lower", "upper"))


class ThreadPool(FitPool):
    """Fits in two threads, each submission's time and the releases each series was told recorded
    (`fit_batch` is pure: threads are enough)."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(2)
        self.submitted: list[float] = []
        self.told: dict[str, tuple[int, ...]] = {}
        self.first = threading.Event()
        outer = self

        class Recording(Executor):
            def submit(self, fn, /, *args, **kwargs) -> Future:
                outer.submitted.append(time.monotonic())
                outer.told.update((s.labels["instance"], r) for s, r in zip(args[0], args[2]))
                outer.first.set()
                return outer.inner.submit(fn, *args, **kwargs)

        self._executor = Recording()

    def executor(self) -> Executor:
        return self._executor

    def slots(self) -> int:
        return 2

    def close(self) -> None:
        self.inner.shutdown()


def one_at_a_time(series: list[Series], handed: list[int], pause: float = 0.0,
                  before: Callable[[int], object] = lambda n: None) -> Callable[..., FetchResult]:
    """A streaming fetch that hands `series` over one at a time (calling `before(n)` first), counting
    each in `handed`, `pause` seconds apart."""
    def fetch(config, alias, end=None, on_series=None) -> FetchResult:
        for n, s in enumerate(series):
            before(n)
            on_series([s])
            handed.append(1)
            time.sleep(pause)
        return FetchResult(alias, [], 0, len(series), 0, 0.0)

    return fetch


# --- fits while fetching ----------------------------------------------------------------------------


def test_fits_start_while_the_fetch_goes_on_and_give_the_fetch_then_fit_state(tmp_path):
    config = config_for(tmp_path)
    series = [history(i, 100 + 10 * n) for n, i in enumerate("abcdef")]
    ended: list[float] = []
    waited: list[bool] = []

    def streaming(config, alias, end=None, on_series=None) -> FetchResult:
        on_series(series[:3])
        waited.append(pool.first.wait(30))  # the fits of the first batch are sent before the fetch goes on
        on_series(series[3:])
        ended.append(time.monotonic())
        return FetchResult(alias, [], 0, 3, sum(s.observed for s in series), 0.0)

    def whole(config, alias, end=None) -> FetchResult:  # a fetch that knows nothing of on_series
        return FetchResult(alias, list(series), 0, 1, 0, 0.0)

    pool = ThreadPool()
    progress: list[tuple[int, int]] = []
    try:
        piped = retrain_baseline(config, "b", None, pool, NOW, fetch=streaming, alerts=[],
                                 on_progress=lambda done, total: progress.append((done, total)))
    finally:
        pool.close()
    assert waited == [True] and pool.submitted[0] < ended[0]
    assert piped.fetched == piped.fitted == 6 and not piped.failures
    assert {total for _, total in progress} == {3, 6} and progress[-1] == (6, 6)
    plain = retrain_baseline(config, "b", None, None, NOW, fetch=whole, alerts=[])
    assert plain.fitted == 6 and same_bands(piped.state, plain.state)


def test_a_fetch_faster_than_the_fits_waits_for_them(tmp_path, monkeypatch):
    """The retrain holds a few lists of series, not the baseline: once the pool's backlog is full and
    the hand-over holds its capacity, the fetch's `on_series` waits until the fits take more."""
    from smartmetrics.app import retrain

    monkeypatch.setattr(retrain, "BACKLOG", 2)
    config = config_for(tmp_path)
    series = [history(f"i{n:02d}", 100 + n) for n in range(12)]
    gate = threading.Event()
    held: list[int] = []  # series sent to the pool while its fits were held back, at each hand-over
    ended: list[bool] = []  # whether the fits had been let go when the fetch ended

    class Gated(ThreadPool):
        """Fits that wait for `gate`: the fetch runs ahead of them as far as it is allowed."""

        def __init__(self) -> None:
            super().__init__()
            inner = self._executor

            class Waiting(Executor):
                def submit(self, fn, /, *args, **kwargs) -> Future:
                    return inner.submit(lambda *a, **k: (gate.wait(30), fn(*a, **k))[1], *args, **kwargs)

            self._executor = Waiting()

    def streaming(config, alias, end=None, on_series=None) -> FetchResult:
        for s in series:
            on_series([s])
            if not gate.is_set():
                held.append(len(pool.submitted))
        ended.append(gate.is_set())
        return FetchResult(alias, [], 0, len(series), sum(s.observed for s in series), 0.0)

    pool = Gated()
    threading.Timer(1.0, gate.set).start()  # the fits hold back for a second, then go
    try:
        outcome = retrain_baseline(config, "b", None, pool, NOW, fetch=streaming, alerts=[])
    finally:
        gate.set()
        pool.close()
    assert outcome.fitted == 12 and not outcome.failures and len(pool.submitted) == 12
    # while the fits were held back: 2 series sent (the backlog), then 4 lists waiting in the hand-over,
    # and the fetch itself waiting for the fits: it could not end before they were let go
    assert held and max(held) <= 2 and ended == [True]
    assert outcome.fetch_seconds < 0.5  # the second it waited for the fits is not the source's latency


def test_a_retrain_that_gives_up_stops_its_fetch(tmp_path):
    """An error in the fits' side (here the progress callback) ends the retrain at once, and the
    fetch, at its next hand-over, rather than going on to ask the source for every remaining batch."""
    config = config_for(tmp_path)
    series = [history(f"i{n:02d}") for n in range(40)]
    handed: list[int] = []
    stopped = threading.Event()

    def streaming(config, alias, end=None, on_series=None) -> FetchResult:
        try:
            for s in series:
                on_series([s])
                handed.append(1)
                time.sleep(0.01)
        finally:
            stopped.set()
        return FetchResult(alias, [], 0, len(series), 0, 0.0)

    def failing(done: int, total: int) -> None:
        if total >= 3:
            raise RuntimeError("the progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        retrain_baseline(config, "b", None, None, NOW, fetch=streaming, alerts=[], on_progress=failing)
    assert stopped.wait(10) and len(handed) < 10


def test_a_pool_lost_mid_retrain_stops_the_fetch_and_keeps_what_was_fitted(tmp_path):
    """A cluster gone (the pool names a `problem`) ends the retrain without asking the source for the
    remaining batches: the fitted series are stored, the lost ones counted, the others keep their bands."""
    config = config_for(tmp_path)
    series = [history(f"i{n:02d}") for n in range(30)]
    handed: list[int] = []

    class Vanishing(ThreadPool):
        """Fits two groups, then reports its cluster gone."""

        def problem(self) -> str | None:
            return "the Dask scheduler went away" if len(self.submitted) >= 2 else None

    streaming = one_at_a_time(series, handed, pause=0.02)
    pool = Vanishing()
    try:
        outcome = retrain_baseline(config, "b", None, pool, NOW, fetch=streaming, alerts=[])
    finally:
        pool.close()
    assert outcome.error is None and len(handed) < 15  # the fetch stopped well before its end
    assert outcome.fitted + outcome.failures["PoolLost"] == outcome.fetched
    assert outcome.fitted >= 1 and len(outcome.state.series) == outcome.fitted


def test_a_pool_stopped_mid_retrain_stops_the_fetch_quietly(tmp_path, caplog):
    """A daemon's stop stops its local pool under a running retrain: the next group it refuses ends
    the retrain, and the fetch at its next hand-over, instead of fetching every remaining batch only
    to lose its fits; every series fetched is counted, and nothing is logged as an error."""
    config = config_for(tmp_path)
    series = [history(f"i{n:02d}") for n in range(40)]
    handed: list[int] = []
    pool = LocalPool(1)
    # the pool stopped as `Daemon.stop` does, before the fourth series is handed over
    streaming = one_at_a_time(series, handed, pause=0.02, before=lambda n: n == 3 and pool.stop())
    try:
        with caplog.at_level(logging.INFO, logger="smartmetrics"):
            outcome = retrain_baseline(config, "b", None, pool, NOW, fetch=streaming, alerts=[])
    finally:
        pool.close()
    assert len(handed) < 15  # the fetch stopped well before its end
    assert outcome.fitted + sum(outcome.failures.values()) == outcome.fetched < len(series)
    assert outcome.interrupted == "the daemon is stopping"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "stopped fetching" in caplog.text


def test_a_pool_that_refuses_a_fit_ends_the_retrain_after_the_fits_under_way(tmp_path):
    """A refused submission (a broken pool) ends the retrain, but the fits already running are taken,
    and every series fetched is counted: fitted, or lost with a reason."""
    config = config_for(tmp_path)
    series = [history(f"i{n:02d}") for n in range(10)]

    class Refusing(ThreadPool):
        def __init__(self) -> None:
            super().__init__()
            recording, outer = self._executor, self

            class Slow(Executor):
                def submit(self, fn, /, *args, **kwargs) -> Future:
                    if len(outer.submitted) == 2:
                        raise RuntimeError("cannot schedule new futures after shutdown")
                    return recording.submit(lambda *a: (time.sleep(0.5), fn(*a))[1], *args)

            self._executor = Slow()

    streaming = one_at_a_time(series, [])
    pool = Refusing()
    try:
        outcome = retrain_baseline(config, "b", None, pool, NOW, fetch=streaming, alerts=[])
    finally:
        pool.close()
    assert outcome.fitted == 2 and len(outcome.state.series) == 2  # the two under way were waited for
    assert outcome.fitted + sum(outcome.failures.values()) == outcome.fetched
    assert outcome.interrupted.startswith("the pool refused fits (RuntimeError")


def test_release_markers_are_read_once_for_every_batch(tmp_path):
    config = config_for(tmp_path, releases={"expr": "changes(deploy[5m]) > 0", "match": ["instance"]})
    series = [history(i) for i in "abcd"]
    calls: list[str] = []

    def fetch(config, alias, end=None, on_series=None) -> FetchResult:
        expr = config.baselines[alias].expr
        calls.append(expr)
        if expr.startswith("changes("):
            t = series[0].timestamps
            marker = Series({"instance": "b"}, t, (t == t[-100]).astype(float), STEP)
            return FetchResult(alias, [marker], 0, 1, 0, 0.0)
        for s in series:
            on_series([s])
        return FetchResult(alias, [], 0, 4, 0, 0.0)

    pool = ThreadPool()
    try:
        outcome = retrain_baseline(config, "b", None, pool, NOW, fetch=fetch, alerts=[])
    finally:
        pool.close()
    assert outcome.fitted == 4 and calls.count("m") == 1 and len(calls) == 2
    assert pool.told == {"a": (), "b": (int(series[0].timestamps[-100]),), "c": (), "d": ()}


def test_a_fetch_that_fails_as_a_whole_keeps_every_band(tmp_path):
    from smartmetrics.adapters.source import SourceError

    def down(config, alias, end=None, on_series=None) -> FetchResult:
        raise SourceError("cannot reach http://prom.test", alias)

    outcome = retrain_baseline(config_for(tmp_path), "b", None, None, NOW, fetch=down, alerts=[])
    assert outcome.error == "baseline b: cannot reach http://prom.test" and outcome.state is None


def test_the_local_pool_starts_its_workers_before_the_first_fit():
    pool = LocalPool(2)
    try:
        executor = pool.start()
        assert len(executor._processes) == 2  # spawned now, importing the fit machinery while the fetch runs
    finally:
        pool.close()


# --- a batch that cannot be fetched -----------------------------------------------------------------


class FakePrometheus:
    """Series `m` by `instance` over httpx.MockTransport, at a `level` tests change; a batch whose regex
    matches `failing` answers 503 every time."""

    def __init__(self, instances: str) -> None:
        self.instances, self.level, self.failing = instances, 100.0, None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/series":
            data = [{"__name__": "m", "instance": i, "job": "api"} for i in self.instances]
            return httpx.Response(200, json={"status": "success", "data": data})
        form = dict(httpx.QueryParams(request.content.decode()))
        label, quoted = re.search(r'(\w+)=~(".*")', form["query"]).groups()
        assert label == "instance"
        wanted = [i for i in self.instances if re2.fullmatch(json.loads(quoted), i)]
        if self.failing in wanted:
            return httpx.Response(503, text="overloaded")
        lo, hi = int(form["start"]), int(form["end"])
        result = []
        for i in wanted:
            s = history(i, self.level)
            inside = (s.timestamps >= lo) & (s.timestamps <= hi)
            pairs = [[int(t), repr(float(v))] for t, v in zip(s.timestamps[inside], s.values[inside])]
            result.append({"metric": {"__name__": "m", "instance": i, "job": "api"}, "values": pairs})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})


def stored_bands(path: Path) -> dict:
    """The bands of a stored baseline, by instance, as the store gives them back."""
    return {b.labels["instance"]: b for b in load_baseline(path).series}


@pytest.mark.parametrize("pooled", [False, True], ids=["inline", "pool"])
def test_a_batch_failing_on_every_retry_fails_only_its_series_which_keep_their_bands(tmp_path, pooled):
    config = config_for(tmp_path)  # 865 points a series, 2,000 samples a request: 2 series a batch
    source = FakePrometheus("abcdef")
    fetch = functools.partial(fetch_baseline, transport=httpx.MockTransport(source), backoff=0.001)
    pool = ThreadPool() if pooled else None
    try:
        first = retrain_baseline(config, "b", None, pool, NOW, fetch=fetch, alerts=[])
        assert first.fitted == 6 and not first.failures
        before = stored_bands(save_baseline(config.store.path, first.state))
        source.level, source.failing = 300.0, "d"  # the batch of c and d fails; the others moved
        second = retrain_baseline(config, "b", first.state, pool, NOW + 3600, fetch=fetch, alerts=[])
    finally:
        if pool is not None:
            pool.close()
    assert second.error is None and second.failures == {"FetchFailed": 2}
    assert (second.fetched, second.fitted) == (4, 4)
    stored = stored_bands(save_baseline(config.store.path, second.state))
    assert set(stored) == set("abcdef")
    for instance, band in stored.items():
        kept = np.array_equal(band.yhat, before[instance].yhat)
        assert kept == (instance in "cd"), instance
        assert kept or np.nanmedian(band.yhat) > 250  # refitted at the new level
