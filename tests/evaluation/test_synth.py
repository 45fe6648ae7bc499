"""The synthetic corpus: deterministic by seed, every type, labels that match what was injected."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.series import Series
from smartmetrics.evaluation.synth import (
    ANOMALY_KINDS,
    CURVE_KINDS,
    Anomaly,
    inject_anomaly,
    make_corpus,
    make_series,
)
from smartmetrics.evaluation.synth_anomalies import inject_series_anomaly


def test_same_seed_same_series_and_different_seed_differs() -> None:
    a = make_series("seasonal", seed=5, anomalies=True)
    b = make_series("seasonal", seed=5, anomalies=True)
    c = make_series("seasonal", seed=6, anomalies=True)
    assert np.array_equal(a.series.values, b.series.values, equal_nan=True)
    assert a.anomalies == b.anomalies and a.periods == b.periods
    assert not np.array_equal(a.series.values, c.series.values, equal_nan=True)


def test_corpus_spans_every_type_noise_and_anomaly_setting() -> None:
    corpus = make_corpus(96, seed=1)
    assert {c.curve_type for c in corpus} == set(CURVE_KINDS)
    assert {c.noise for c in corpus} == {"low", "medium", "high"}
    assert any(c.anomalies for c in corpus) and any(not c.anomalies for c in corpus)
    scales = {np.nanmedian(c.series.values) > 5000 for c in corpus if c.curve_type == "stable"}
    assert scales == {True, False}  # tenants 1000x apart


def test_grid_is_utc_regular_with_gaps_and_quantised_values() -> None:
    corpus = make_corpus(48, seed=2)
    for item in corpus:
        s = item.series
        assert np.all(np.diff(s.timestamps) == s.step)
    with_gaps = [c for c in corpus if np.isnan(c.series.values).any()]
    assert len(with_gaps) >= len(corpus) // 3
    stable = next(c for c in corpus if c.curve_type == "stable").series.values
    finite = stable[np.isfinite(stable)]
    assert len(np.unique(finite)) < 0.9 * len(finite)  # rounded to an exporter's resolution


def test_anomaly_labels_cover_the_points_that_changed() -> None:
    clean = make_series("stable", seed=3, noise="low", anomalies=False)
    dirty = make_series("stable", seed=3, noise="low", anomalies=True)
    assert dirty.anomalies and all(a.kind in ANOMALY_KINDS for a in dirty.anomalies)
    t = clean.series.timestamps
    inside = np.zeros(len(t), bool)
    for a in dirty.anomalies:
        assert a.start <= a.end
        inside |= (t >= a.start) & (t <= a.end)
    both = np.isfinite(clean.series.values) & np.isfinite(dirty.series.values)
    changed = both & (np.abs(clean.series.values - dirty.series.values) > 1e-9)
    assert changed.any()
    assert not (changed & ~inside).any()


@pytest.mark.parametrize("kind", ["spike", "dip", "level_shift", "flatline", "drift", "variance_burst"])
def test_inject_changes_only_the_window(kind: str) -> None:
    t = np.arange(100) * 60
    values = 10 + np.sin(np.arange(100))
    out = inject_anomaly(values, t, Anomaly(kind, 3000, 3600), 4.0, seed=1)
    window = (t >= 3000) & (t <= 3600)
    assert np.array_equal(out[~window], values[~window])
    assert not np.allclose(out[window], values[window])
    assert np.array_equal(values, 10 + np.sin(np.arange(100)))  # input untouched


def test_inject_series_keeps_grid_and_labels() -> None:
    s = Series({"job": "x"}, np.arange(10) * 60, np.ones(10), 60)
    out = inject_series_anomaly(s, Anomaly("spike", 120, 120), 5.0)
    assert out.labels == s.labels and out.step == 60
    assert out.values[2] == 6.0 and out.values[3] == 1.0


def test_seasonal_truth_periods_and_insufficient_is_short_or_sparse() -> None:
    corpus = make_corpus(160, seed=4)
    for item in corpus:
        if item.curve_type == "seasonal":
            assert item.periods and all(p in (3600, 4 * 3600, 6 * 3600, 12 * 3600, 86400, 604800)
                                        for p in item.periods)
        else:
            assert item.periods == ()
        if item.curve_type == "insufficient":
            s = item.series
            assert len(s) * s.step < 86400 or s.observed < 48
            assert item.anomalies == ()


def test_benign_changes_are_recorded_where_the_level_moves() -> None:
    shifted = make_series("level_shift", seed=3, noise="low")
    assert 1 <= len(shifted.changes) <= 3 and not shifted.anomalies
    v, t = shifted.series.values, shifted.series.timestamps
    for at in shifted.changes:  # the median level an hour either side differs by a deploy's jump
        before = np.nanmedian(v[(t >= at - 3600) & (t < at)])
        after = np.nanmedian(v[(t >= at) & (t < at + 3600)])
        assert abs(after - before) > 0.25 * np.nanmedian(v)
    gauge = make_series("constant", seed=3, noise="high")  # no unlabelled operator changes: unambiguous
    assert gauge.changes == () and np.nanmin(gauge.series.values) == np.nanmax(gauge.series.values)
    assert make_series("stable", seed=3).changes == ()


@pytest.mark.parametrize("kind,variant", [("regime", "batch"), ("regime", "autoscaled"), ("intermittent", "blips"),
                                          ("intermittent", "low_count"), ("seasonal", "counter"),
                                          ("seasonal", "histogram")])
def test_the_prometheus_like_families_are_there(kind: str, variant: str) -> None:
    found = [item for seed in range(40) if (item := make_series(kind, seed=seed)).variant.startswith(variant)]
    assert found, f"no {kind}/{variant} in 40 seeds"
    v = found[0].series.values
    v = v[np.isfinite(v)]
    if variant == "autoscaled":  # whole replica counts, several of them
        assert np.all(v == np.round(v)) and len(np.unique(v)) >= 3
    if variant in ("low_count", "counter"):  # rate() of a counter: multiples of 1/window (or of 1/step)
        assert np.allclose(v * 300, np.round(v * 300), atol=1e-6)
    if variant == "histogram":  # a quantile interpolated in the default buckets: never above the last edge
        assert v.max() <= 10.0 and v.min() >= 0.0
    if variant == "blips":  # a ratio: zero but for small blips
        assert np.mean(v == 0) > 0.9 and v.max() < 0.02


def test_tuning_and_test_seeds_are_disjoint() -> None:
    from smartmetrics.evaluation.synth import TEST_SEEDS, TUNING_SEEDS

    assert TEST_SEEDS and TUNING_SEEDS and not set(TEST_SEEDS) & set(TUNING_SEEDS)
