"""Natural ranges: fitted, replayed and served bands stay within what the series can take."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from smartmetrics.adapters.exporter import BandCollector, Snapshot
from smartmetrics.config import ConfigError, parse_config
from smartmetrics.engine.ensemble import FitSettings, fit_series, walk_forward_fit
from smartmetrics.engine.series import Series
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.evaluation.backtest import DAY, walk_forward_band
from smartmetrics.settings import fit_settings

STEP = 300


def error_ratio(days: int = 8, seed: int = 0) -> Series:
    """Zero except small isolated blips: the band's lower edge would go below 0 without a floor."""
    rng = np.random.default_rng(seed)
    n = days * DAY // STEP
    v = np.where(rng.random(n) < 0.05, rng.uniform(0.001, 0.004, n), 0.0)
    return Series({"model": "a"}, np.arange(n, dtype=np.int64) * STEP, v, STEP)


def gpu_utilisation(days: int = 8, seed: int = 1) -> Series:
    """Idles near 0.1 and runs batch jobs at 0.97-1.0 for tens of minutes: the upper edge would pass 1."""
    rng = np.random.default_rng(seed)
    n = days * DAY // STEP
    v = 0.1 + rng.normal(0, 0.03, n)
    for start in rng.integers(0, n - 12, days * 2):
        v[start:start + rng.integers(4, 12)] = rng.uniform(0.97, 1.0)
    return Series({"gpu": "0"}, np.arange(n, dtype=np.int64) * STEP, np.clip(v, 0, 1), STEP)


@pytest.mark.parametrize(("series", "hints", "top"), [
    (error_ratio(), "error_ratio sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))", 1.0),
    (gpu_utilisation(), "gpu avg by (gpu) (DCGM_FI_DEV_GPU_UTIL) / 100", 1.0),
])
def test_a_fitted_ratio_band_stays_between_0_and_1(series: Series, hints: str, top: float) -> None:
    fitted = fit_series(series, FitSettings(hints=hints))
    assert fitted.training["range"] == [0.0, top]
    assert np.nanmin(fitted.lower) >= 0.0 and np.nanmin(fitted.yhat) >= 0.0
    assert np.nanmax(fitted.upper) <= top and np.nanmax(fitted.yhat) <= top


def test_without_a_hint_only_the_floor_is_inferred() -> None:
    fitted = fit_series(gpu_utilisation(), FitSettings(hints="latency_seconds"))
    assert fitted.training["range"] == [0.0, None] and np.nanmin(fitted.lower) >= 0.0


def test_a_configured_range_wins_and_reaches_the_fit_settings() -> None:
    config = parse_config({"sources": {"p": {"url": "http://x:1"}},
                           "baselines": {"temp": {"expr": "celsius", "range": [-40, 120]},
                                         "error_ratio": {"expr": "errors / requests"}}})
    assert fit_settings(config.baselines["temp"], "temp").range == (-40.0, 120.0)
    assert "error_ratio" in fit_settings(config.baselines["error_ratio"], "error_ratio").hints
    fitted = fit_series(gpu_utilisation(), FitSettings(range=(0.0, 0.5)))
    assert np.nanmax(fitted.upper) <= 0.5


@pytest.mark.parametrize(("bad", "message"), [([1, 0], "must be below"), ([0, float("inf")], "finite")])
def test_a_bad_range_names_the_field(bad: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"sources": {"p": {"url": "http://x:1"}}, "baselines": {"q": {"expr": "x", "range": bad}}})
    assert "baselines.q" in str(err.value)


def test_a_followed_band_stays_in_range_in_the_replay() -> None:
    series = gpu_utilisation(days=6)
    values = series.values.copy()
    values[-100:] = 0.99  # the last hours at full load: the follow pass moves the band up
    moved = Series(series.labels, series.timestamps, values, STEP)
    band = walk_forward_band(moved, walk_forward_fit(FitSettings(hints="gpu_utilization")), retrain_every=DAY,
                             history=14 * DAY, min_history=5 * DAY).with_follow(moved, 3600)
    assert np.nanmax(band.upper) <= 1.0 and np.nanmin(band.lower) >= 0.0


def test_the_exporter_serves_a_moved_band_clipped_to_the_stored_range() -> None:
    y = np.array([0.002, 0.002, 0.002])
    stored = SeriesBand({"model": "a"}, 1000, 60, y, y - 0.004, y + 0.999, meta={"training": {"range": [0.0, 1.0]}})
    registry = CollectorRegistry()
    snapshot = Snapshot({"err": BaselineState("err", 0.0, (stored,))})
    registry.register(BandCollector(lambda: snapshot, clock=lambda: 1060.0))
    labels = {"baseline": "err", "model": "a"}
    assert registry.get_sample_value("smartmetrics_yhat_lower", labels) == 0.0
    assert registry.get_sample_value("smartmetrics_yhat_upper", labels) == 1.0
    assert registry.get_sample_value("smartmetrics_yhat", labels) == pytest.approx(0.002)
