"""Faithful replays of the detectors smartmetrics is measured against (shared/PEERS.md).

- prophet-bands: the Prometheus Anomaly Detector's model, one Prophet per series with daily, weekly
  and yearly seasonality forced on, retrained on the trailing window; outside the band = anomalous.
- grafana-adaptive: Grafana's promql-anomaly-detection adaptive strategy, its recording rules
  evaluated causally on live data as Prometheus would (each point sees only samples up to itself).
- static-3sigma: mean ± 3 standard deviations of the training window, constant over the next period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmetrics.engine.series import Series

GRAFANA_STDDEV_MULT = 2.0
GRAFANA_MARGIN_MULT = 0.5
GRAFANA_CV_THRESHOLD = 0.5
GRAFANA_LOOKBACKS = ("23h30min", "167h30min")
GRAFANA_FOR_SECONDS = 300


@dataclass(frozen=True)
class TableBand:
    """A forecast table (timestamps, yhat, lower, upper) looked up exactly; NaN where it has no row."""

    timestamps: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def band_at(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Band values at `timestamps`, NaN for timestamps the table does not hold."""
        timestamps = np.asarray(timestamps)
        out = [np.full(len(timestamps), np.nan) for _ in range(3)]
        if len(self.timestamps):
            idx = np.clip(np.searchsorted(self.timestamps, timestamps), 0, len(self.timestamps) - 1)
            hit = self.timestamps[idx] == timestamps
            for dest, src in zip(out, (self.yhat, self.lower, self.upper)):
                dest[hit] = src[idx[hit]]
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class ConstantBand:
    """The same band for every future timestamp (static-3sigma)."""

    yhat: float
    lower: float
    upper: float

    def band_at(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The constant band repeated for each timestamp."""
        n = len(timestamps)
        return np.full(n, self.yhat), np.full(n, self.lower), np.full(n, self.upper)


def fit_static_3sigma(train: Series, horizon: int) -> ConstantBand | None:
    """Mean ± 3σ (population) of the finite training values; None without data.

    >>> b = fit_static_3sigma(Series({}, np.arange(4), np.array([1.0, 3.0, 1.0, 3.0]), 1), 10)
    >>> (b.yhat, b.lower, b.upper)
    (2.0, -1.0, 5.0)
    """
    finite = train.values[np.isfinite(train.values)]
    if len(finite) == 0:
        return None
    mean, sd = float(finite.mean()), float(finite.std())
    return ConstantBand(mean, mean - 3.0 * sd, mean + 3.0 * sd)


def quiet_prophet() -> None:
    """Silence Prophet's and cmdstanpy's per-fit chatter (call before importing prophet).

    cmdstanpy installs its own INFO handler unless its logger already has one, so it gets a
    NullHandler; prophet.plot's "plotly failed" notice is an ERROR at import time.
    """
    for name in ("prophet", "prophet.plot", "cmdstanpy"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        logger.propagate = False
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


@dataclass
class ProphetFit:
    """A fitted Prophet model plus the grid it should predict; `band(width)` gives a TableBand."""

    model: object
    future: np.ndarray

    def bands(self, widths: tuple[float, ...]) -> dict[float, TableBand]:
        """Predict the coming grid once and read each interval width off the same posterior samples.

        Prophet's own `predict` takes the same percentiles of the same samples; sampling once
        serves both the as-built (0.8) and the fairer (0.99) variant at half the cost.
        """
        frame = pd.DataFrame({"ds": pd.to_datetime(self.future, unit="s")})
        np.random.seed(0)  # Prophet samples its intervals; a fixed seed keeps reruns identical
        samples = self.model.predictive_samples(frame)["yhat"]
        samples_wanted, self.model.uncertainty_samples = self.model.uncertainty_samples, 0
        try:
            yhat = self.model.predict(frame)["yhat"].to_numpy(copy=True)
        finally:
            self.model.uncertainty_samples = samples_wanted
        out = {}
        for w in widths:
            lo, hi = np.percentile(samples, [50 * (1 - w), 50 * (1 + w)], axis=1)
            out[w] = TableBand(self.future, yhat, lo, hi)
        return out


def fit_prophet(train: Series, horizon: int) -> ProphetFit | None:
    """One Prophet per series as the Prometheus Anomaly Detector builds it (all seasonalities forced on)."""
    quiet_prophet()
    from prophet import Prophet

    ok = np.isfinite(train.values)
    if ok.sum() < 2:
        return None
    history = pd.DataFrame({"ds": pd.to_datetime(train.timestamps[ok], unit="s"), "y": train.values[ok]})
    model = Prophet(daily_seasonality=True, weekly_seasonality=True, yearly_seasonality=True)
    model.fit(history)
    future = train.end + train.step * np.arange(1, horizon // train.step + 1, dtype=np.int64)
    return ProphetFit(model, future)


def prophet_band_fit(interval_width: float):
    """A backtest fit function for prophet-bands at one interval width."""
    def fit(train: Series, horizon: int) -> TableBand | None:
        fitted = fit_prophet(train, horizon)
        return None if fitted is None else fitted.bands((interval_width,))[interval_width]
    return fit


def _offset_to_grid(frame: pd.Series, offset: str, index: pd.DatetimeIndex, step: int) -> pd.Series:
    """The value `frame` had `offset` ago, placed on `index` (PromQL's `offset` modifier)."""
    shifted = frame.shift(freq=pd.Timedelta(offset)).dropna()
    tolerance = pd.Timedelta(seconds=max(step - 1, 0))
    return shifted.reindex(index, method="ffill", tolerance=tolerance) if len(shifted) else shifted.reindex(index)


def grafana_adaptive_band(series: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adaptive strategy's `(avg_1h, lower, upper)` at every point from samples up to that point.

    Rolling time windows in pandas are closed on the right, `(t - w, t]`, which is PromQL's range
    selector; NaN gaps are absent samples. The rules run on the data grid (exact for 5-minute data).
    """
    index = pd.to_datetime(series.timestamps, unit="s")
    select = pd.Series(np.where(series.values > 0, series.values, np.nan), index=index)
    avg_1h = select.rolling("1h").mean()
    std_1h = select.rolling("1h").std(ddof=0)
    std_filtered = std_1h.where(std_1h > GRAFANA_CV_THRESHOLD * avg_1h)
    std_st = std_filtered.rolling("26h").mean()
    uppers = [avg_1h + GRAFANA_STDDEV_MULT * std_st, avg_1h + GRAFANA_MARGIN_MULT * avg_1h]
    lowers = [avg_1h - GRAFANA_STDDEV_MULT * std_st, avg_1h - GRAFANA_MARGIN_MULT * avg_1h]
    for offset in GRAFANA_LOOKBACKS:
        avg_lt = _offset_to_grid(avg_1h, offset, index, series.step)
        std_lt = _offset_to_grid(std_1h, offset, index, series.step)
        uppers.append(avg_lt + GRAFANA_STDDEV_MULT * std_lt)
        lowers.append(avg_lt - GRAFANA_STDDEV_MULT * std_lt)
    upper = pd.concat(uppers, axis=1).max(axis=1, skipna=True).to_numpy(copy=True)
    lower = np.fmax(0.0, pd.concat(lowers, axis=1).min(axis=1, skipna=True).to_numpy(copy=True))
    yhat = avg_1h.to_numpy(copy=True)
    absent = ~np.isfinite(yhat)
    upper[absent] = np.nan
    lower[absent] = np.nan
    return yhat, lower, upper


def grafana_for_points(step: int) -> int:
    """Consecutive points outside for a 5-minute `for`: pending at the first, firing `for` later.

    >>> grafana_for_points(300), grafana_for_points(60)
    (2, 6)
    """
    return GRAFANA_FOR_SECONDS // step + 1 if step <= GRAFANA_FOR_SECONDS else 1
