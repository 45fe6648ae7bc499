"""Stores written by earlier versions still load, and serve the same bands: a schema-1 store committed
as written at 78c5f24 (`tests/data/store_v1/`, from `v1_states()` below), and the exposition it gave
then (`tests/golden/exporter/store_v1_metrics.txt`). The reader may get faster; what it reads and what
is served from it may not change.

Regenerate the store only for a new schema version (keep the old one beside it):
`python -m tests.adapters.test_store_compat OUT_DIR`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from smartmetrics.adapters.exporter import Snapshot
from smartmetrics.adapters.store import load_baseline, load_store, save_baseline
from smartmetrics.engine.state import BaselineState, SeriesBand

V1 = Path(__file__).parent.parent / "data" / "store_v1"
T0 = 1_700_000_000
TIMES = (T0 + 60.0, T0 + 450.5, T0 + 1800.0, T0 + 1830.0, T0 + 3900.0)  # grid hits, between points, ends, gaps
AHEAD = {"qps": (("15m", 900.0),)}


def v1_states() -> dict[str, BaselineState]:
    """Every kind of series the exporter treats apart: gaps, short and long tables, odd labels, clipped
    ranges, stuck and sustained limits (valid and not), realised tallies, a withheld band."""
    rng = np.random.default_rng(23)

    def table(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = 100 + np.cumsum(rng.standard_normal(n))
        return y, y - rng.uniform(1, 5, n), y + rng.uniform(1, 5, n)

    gap = table(40)
    for column in gap:
        column[7] = np.nan
    trainings = [
        {"stuck_after": 1800, "sustained": {"window": 3600, "lower": 90.5, "upper": 120.25}},
        {"range": [99.0, None], "stuck_after": 0},
        {"range": [None, 101.0], "sustained": {"window": 3600, "lower": None, "upper": 1e-7}},
        {"range": [0.0, 1.0], "sustained": {"window": 0, "lower": 1, "upper": 2}},
        {"stuck_after": "1800", "sustained": {"window": 3600, "lower": 3, "upper": 2}},
        {"withheld": True},
        {},
    ]
    qps = [SeriesBand({"model": f"m{i}", "tenant": "t"}, T0 - 300 * (i % 3), 60 * (1 + i % 2), *table(30 + 5 * i),
                      meta={"curve_type": "seasonal", "model": "profile", "training": training,
                            "realised": {"since": T0, "until": T0 + 600, "points": 10 + i, "inside": 9}})
           for i, training in enumerate(trainings)]
    qps += [
        SeriesBand({"model": 'q"uo\\te\n', "service.name": "api", "service_name": "x", "1st": "y"}, T0, 60, *gap),
        SeriesBand({"baseline": "theirs", "ahead": "a", "model": "short"}, T0, 60, *table(3), meta={"model": "naive"}),
        SeriesBand({"model": "one"}, T0 + 1800, 60, *table(1)),
        SeriesBand({"model": "future"}, T0 + 3600, 300, *table(12)),
    ]
    lat = [SeriesBand({"job": "api", "le": str(q)}, T0, 300, *table(25), meta={"training": {"stuck_after": 600.5}})
           for q in (0.5, 0.9, 0.99)]
    return {"qps": BaselineState("qps", T0 + 12.5, tuple(qps), {"fingerprint": "f", "sharding": [0, 1]}),
            "lat": BaselineState("lat", T0 + 7.0, tuple(lat), {})}


def _same_band(a: SeriesBand, b: SeriesBand) -> None:
    assert (a.labels, a.start, a.step, a.meta) == (b.labels, b.start, b.step, b.meta)
    for name in ("yhat", "lower", "upper"):  # stored as float32
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name).astype(np.float32))


def _exposition(states: dict[str, BaselineState]) -> str:
    snapshot = Snapshot(states, ahead=AHEAD)
    return "".join(f"# at {t}\n" + snapshot.render_text(t) for t in TIMES)


def test_a_schema_1_store_loads_as_written() -> None:
    states, errors = load_store(V1)
    expected = v1_states()
    assert errors == [] and sorted(states) == sorted(expected)
    for alias, state in expected.items():
        loaded = states[alias]
        assert (loaded.alias, loaded.fitted_at, loaded.meta) == (state.alias, state.fitted_at, state.meta)
        assert len(loaded.series) == len(state.series)
        for a, b in zip(state.series, loaded.series):
            _same_band(a, b)


def test_a_schema_1_store_serves_the_bands_it_served_when_written(golden: Callable[[str, str], None]) -> None:
    states, _ = load_store(V1)
    golden("exporter/store_v1_metrics.txt", _exposition(states))


def test_what_this_version_writes_serves_the_same(tmp_path: Path) -> None:
    for state in v1_states().values():
        save_baseline(tmp_path, state)
    written, _ = load_store(tmp_path)
    old, _ = load_store(V1)
    assert _exposition(written) == _exposition(old)
    for alias in old:
        assert load_baseline(tmp_path / alias / "state.npz").series[0].key == old[alias].series[0].key


def test_the_exporter_serves_from_the_store_tables_without_copying_or_changing_them() -> None:
    states, _ = load_store(V1)
    lat, qps = states["lat"], states["qps"]
    assert lat.tables is not None and all(b.yhat.base is not None for b in lat.series)  # views into them
    before = [t.copy() for t in qps.tables]
    rebuilt = {a: BaselineState(s.alias, s.fitted_at, s.series, s.meta) for a, s in states.items()}  # no tables
    assert _exposition(states) == _exposition(rebuilt)
    for old, now in zip(before, qps.tables):  # qps has series out of their range: clipped when read
        np.testing.assert_array_equal(old, now)
    snapshot = Snapshot(states)
    for state in (lat, qps):
        assert all(a is b for a, b in zip(snapshot._tables[state.alias].values, state.tables))  # no copy
    with pytest.raises(ValueError, match="tables"):  # tables that are not these series' are refused
        BaselineState("lat", 0.0, lat.series[:1], tables=lat.tables)


if __name__ == "__main__":
    for state in v1_states().values():
        save_baseline(sys.argv[1], state)
