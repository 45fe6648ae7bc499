"""The one forecaster contract every model family follows, and the small numeric helpers they share.

A model is any class with:

- `name` (class attribute, its key in `smartmetrics.engine.models.MODELS`);
- `fit(series) -> self`: learns from the finite points of a `Series`, never mutating it; fitted
  state lives in attributes ending in `_`;
- `predict(timestamps) -> Forecast`: a point forecast and a residual scale (a robust sigma) for
  any future Unix timestamps; the ensemble turns scales into calibrated bands;
- `to_dict()` / `from_dict(data)`: JSON-safe parameters and fitted state (no pickle), such that
  the restored model predicts exactly what the original did.

Models combine through functions in `smartmetrics.engine.ensemble`, never through inheritance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from smartmetrics.engine.robust import median, pair_indices
from smartmetrics.engine.series import Series

MAD_TO_SIGMA = 1.4826
DAY = 86400
WEEK = 7 * DAY
WEEKEND = (2, 3)  # Saturday and Sunday as days since the epoch modulo 7 (1970-01-01 was a Thursday)


@dataclass(frozen=True)
class Forecast:
    """Point forecast `mean` and residual scale `scale` (robust sigma, > 0) per requested timestamp."""

    mean: np.ndarray
    scale: np.ndarray


def flat_forecast(n: int, mean: float, scale: float) -> Forecast:
    """The same mean and scale at every one of n timestamps (level-like models).

    >>> flat_forecast(2, 5.0, 1.0).mean.tolist()
    [5.0, 5.0]
    """
    return Forecast(mean=np.full(n, float(mean)), scale=np.full(n, float(scale)))


@runtime_checkable
class Forecaster(Protocol):
    """What the ensemble needs from a model; see the module docstring for the rules."""

    name: ClassVar[str]

    def fit(self, series: Series) -> Self: ...

    def predict(self, timestamps: np.ndarray) -> Forecast: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


class NotFittedError(RuntimeError):
    """`predict` or `to_dict` was called before `fit`."""


def finite_points(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """The (timestamps, values) of the series' finite points, as new arrays."""
    ok = np.isfinite(series.values)
    return series.timestamps[ok].astype(np.int64), series.values[ok].astype(np.float64)


def robust_sigma(x: np.ndarray) -> float:
    """1.4826 x MAD of the finite values, falling back to the std, then to 0 when all equal.

    >>> robust_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    1.4826
    """
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return 0.0
    return sigma_of(abs_deviations(x), x)


def abs_deviations(x: np.ndarray) -> np.ndarray:
    """|x - median(x)| of finite values `x`: what `robust_sigma` takes the median of."""
    return np.abs(x - median(x))


def sigma_of(deviations: np.ndarray, x: np.ndarray) -> float:
    """`robust_sigma(x)` from `abs_deviations(x)` already at hand (finite `x`)."""
    mad = float(median(deviations))
    if mad > 0:
        return MAD_TO_SIGMA * mad
    return float(np.std(x))


def scale_floor(values: np.ndarray) -> float:
    """A tiny positive scale for series whose residuals are all zero, relative to their size."""
    finite = values[np.isfinite(values)]
    size = float(median(np.abs(finite))) if len(finite) else 0.0
    return max(1e-3 * size, 1e-9)


def floored_sigma(resid: np.ndarray, values: np.ndarray) -> float:
    """`max(robust_sigma(resid), scale_floor(values))`, the floor's median taken only where it could
    win: it is at most a thousandth of the largest value, which the sigma of a fit that varies at all
    clears (a fit makes several of these, and each median is a partition of the whole history).

    >>> floored_sigma(np.array([1.0, -1.0, 2.0]), np.array([100.0, 101.0])), floored_sigma(np.zeros(3), np.full(2, 50.0))
    (1.4826, 0.05)
    """
    return floored(robust_sigma(resid), values)


def floored(sigma: float, values: np.ndarray) -> float:
    """`max(sigma, scale_floor(values))`, the floor's median taken only where it could win (values
    near the float limit aside, where that median overflows to infinity and this keeps `sigma`)."""
    finite = values[np.isfinite(values)]
    if len(finite) and sigma >= max(1e-3 * float(np.max(np.abs(finite))), 1e-9):
        return sigma
    return max(sigma, scale_floor(values))


def group_median(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of `values` within each integer group 0..n_groups-1 (NaN for empty groups).

    The values are laid out as a table, one row per group in their original order and NaN after
    them, and each row is sorted stably: the same order as a lexsort by (group, value), ties (+0 and
    -0) included, but many short sorts instead of one long one.

    >>> group_median(np.array([0, 0, 0, 2]), np.array([3.0, 1.0, 2.0, 5.0]), 3).tolist()
    [2.0, nan, 5.0]
    """
    counts = np.bincount(groups, minlength=n_groups)
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    # a stable sort by group gives each value its place in its group's row (radix sort for small ids)
    by_group = np.argsort(groups.astype(np.int16) if n_groups <= np.iinfo(np.int16).max else groups, kind="stable")
    rank = np.empty(len(groups), dtype=np.int64)
    rank[by_group] = np.arange(len(groups)) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((n_groups, int(counts.max())), np.nan)
    table[groups, rank] = values
    table.sort(axis=1, kind="stable")
    has = np.flatnonzero(counts)
    c = counts[has]
    out[has] = 0.5 * (table[has, (c - 1) // 2] + table[has, c // 2])
    return out


def circular_smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over a circular array (a daily or weekly profile), ignoring NaN.

    >>> circular_smooth(np.array([0.0, 3.0, 0.0]), 3).tolist()
    [1.0, 1.0, 1.0]
    """
    if width <= 1 or len(x) < width:
        return x.copy()
    half = width // 2
    padded = np.concatenate((x[-half:], x, x[:half]))
    ok = np.isfinite(padded)
    kernel = np.ones(width)
    sums = np.convolve(np.where(ok, padded, 0.0), kernel, mode="valid")
    counts = np.convolve(ok.astype(float), kernel, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def theil_sen_slope(t: np.ndarray, y: np.ndarray, period: float = 0.0) -> float:
    """Median of pairwise slopes: a trend estimate that ignores outliers (for a few dozen points).

    With a `period`, only pairs a whole number of periods apart count (a cycle cannot pose as a trend).

    >>> t = np.arange(8.0)
    >>> theil_sen_slope(t, t + np.where(t % 7 == 5, -9.0, 0.0), period=7.0)
    1.0
    """
    if len(t) < (2 if period else 3):
        return 0.0
    i, j = pair_indices(len(t))
    dt = t[j] - t[i]
    keep = dt != 0
    if period:
        keep &= np.mod(dt, period) == 0
    return float(median((y[j] - y[i])[keep] / dt[keep])) if keep.any() else 0.0


def array_to_json(x: np.ndarray) -> list[float | None]:
    """A float array as a JSON-safe list, NaN and infinities written as null."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(x, dtype=np.float64)]


def array_from_json(x: list[float | None]) -> np.ndarray:
    """The inverse of `array_to_json`."""
    return np.array([np.nan if v is None else v for v in x], dtype=np.float64)


def sub_series(series: Series, stop: int) -> Series:
    """The first `stop` grid points of a series (a training window for walk-forward backtests)."""
    return Series(
        labels=series.labels,
        timestamps=series.timestamps[:stop],
        values=series.values[:stop],
        step=series.step,
        name=series.name,
    )


def check_fitted(model: object, attr: str) -> None:
    """Raise `NotFittedError` unless `model` has the fitted attribute `attr`."""
    if getattr(model, attr, None) is None:
        raise NotFittedError(f"{type(model).__name__} is not fitted")
