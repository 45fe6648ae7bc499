"""Sustained deviations: the mean of the last hour leaves the range the history's hourly means keep.

Sparse counters, heavy-tailed or bursty gauges and switching ones (curve types `intermittent`, `noisy`
and `regime`) need a
point band so wide that a burst of errors, a denser run of spikes or a shift of a few typical values
stays inside it point by point, though the hour as a whole is plainly unlike any hour before. For
those series the fit also learns limits for the mean over a trailing window: the tail quantiles of
the history's own rolling means, at a miss rate set by the sensitivity (a twentieth of the point band's
miss rate: a trailing hour is tested at every step, 288 times a day, and one that crosses stays
crossed for many of them; at a fifth, regime series raised two false alerts for every detection on the
synthetic tuning seeds; its tail is extrapolated with the same generalised Pareto fit as the band). Only full windows count: the first
window after the history's start holds fewer samples, and one burst in it would set the limit far
too high. A lower limit is only kept where it
is above the least the history shows (a sparse counter's hourly mean of 0 is normal, not low).

The daemon exports the limits (`smartmetrics_mean_upper`, `smartmetrics_mean_lower`) and the
generated `<Alert>Sustained` rule compares `avg_over_time` over the window with them; the backtest
replays the same test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smartmetrics.engine.bands import tail_quantile

CURVE_TYPES = ("intermittent", "noisy", "regime")
WINDOW = 3600  # seconds: the trailing window the mean is taken over (at least MIN_POINTS steps)
MIN_POINTS = 3
MISS_SHARE = 0.05  # the limits' miss rate per side, as a share of the point band's two-sided miss rate
MIN_DAYS = 3.0  # history needed before the hourly means say what is normal
ROUNDING = 1e-9  # the limits' margin beyond the history's means, relative to their size


def window_seconds(step: int) -> int:
    """The mean's window for a series scraped every `step` seconds.

    >>> window_seconds(300), window_seconds(3600)
    (3600, 10800)
    """
    return max(WINDOW, MIN_POINTS * int(step))


def min_points(window: int, step: int) -> int:
    """Samples a window must hold for its mean to count: half of those expected, at least 2.

    >>> min_points(3600, 300), min_points(900, 300)
    (6, 2)
    """
    return max(2, -(-int(window) // int(step)) // 2)


def rolling_mean(timestamps: np.ndarray, values: np.ndarray, window: int, step: int) -> np.ndarray:
    """Per point, the mean of the finite samples within the trailing `window` seconds (the point
    included), or NaN where fewer than half of the window's expected samples are present, as the
    generated rule's sample-count guard does. The timestamps are a series' grid, `step` apart.

    Each window is summed from at most two blocks of its own length (sums within a block, forward
    and backward): a running sum would carry the rounding of one huge sample into every later mean,
    and summing every window whole costs the window's length per point.

    >>> rolling_mean(np.arange(6) * 60, np.array([1.0, 2, 3, np.nan, 5, 6]), 180, 60).round(2).tolist()
    [nan, 1.5, 2.0, 2.0, 3.33, 4.67]
    """
    t = np.asarray(timestamps, dtype=np.int64)
    if len(t) > 1 and not (np.diff(t) == step).all():
        raise ValueError(f"rolling_mean needs timestamps {step}s apart")
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v.copy()
    points = int(window) // int(step) + 1  # [t - window, t], as Prometheus 2.x ranges
    finite = np.isfinite(v)
    sums = _window_sums(np.where(finite, v, 0.0), points)
    seen = np.cumsum(np.concatenate(([0], finite)))  # exact integers
    count = seen[1:] - seen[np.maximum(np.arange(len(v)) + 1 - points, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_points(window, step), (sums / count).astype(np.float64), np.nan)


def _window_sums(x: np.ndarray, width: int) -> np.ndarray:
    """The sum of each trailing window of `width` values of `x` (fewer at the start), in extended
    precision, so that windows holding the same values in another order sum alike (a flat series'
    means must not cross a limit taken from those means by rounding): the window ending at `i` is
    the backward sum from its start to its block's end plus the forward sum of the next block up to
    `i`, blocks of `width` values.

    >>> _window_sums(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 2).astype(float).tolist()
    [1.0, 3.0, 5.0, 7.0, 9.0]
    """
    n = len(x)
    padded = np.zeros(-(-(n + width - 1) // width) * width, dtype=np.longdouble)
    padded[width - 1:width - 1 + n] = x  # window i covers padded[i:i + width]
    blocks = padded.reshape(-1, width)
    forward = np.cumsum(blocks, axis=1).ravel()
    backward = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    start = np.arange(n)
    end = start + width - 1
    whole = start % width == 0  # the window is one block
    return np.where(whole, backward[start], backward[start] + forward[np.minimum(end, len(padded) - 1)])


def mean_limits(timestamps: np.ndarray, values: np.ndarray, step: int, coverage: float) -> dict[str, Any] | None:
    """`{"window", "lower", "upper"}` for the trailing mean (either limit may be None), or None when the
    history is too short or its means never vary.

    >>> rng = np.random.default_rng(1)
    >>> t = np.arange(0, 7 * 86400, 300)
    >>> lim = mean_limits(t, rng.lognormal(0, 1, len(t)), 300, 0.9995)
    >>> lim["window"], 4 < lim["upper"] < 12, 0 < lim["lower"] < 1  # the mean of 12 is 1.65 +- 0.6
    (3600, True, True)
    """
    v = np.asarray(values, dtype=np.float64)
    if np.isfinite(v).sum() * step < MIN_DAYS * 86400:
        return None
    window = window_seconds(step)
    t = np.asarray(timestamps, dtype=np.int64)
    means = rolling_mean(t, v, window, step)
    means = means[np.isfinite(means) & (t >= t[0] + window)]  # the history's first window is partial
    if len(means) < 10 or np.ptp(means) <= 0:
        return None
    miss = MISS_SHARE * (1 - coverage)
    # a hair beyond the tail: an hour that repeats one the history had (a flat or quantised series)
    # must not cross the limit by how Prometheus or the replay rounds its sum
    margin = ROUNDING * float(np.max(np.abs(means)))
    upper = tail_quantile(means, miss) + margin
    lower = -tail_quantile(-means, miss) - margin
    least = float(np.nanmin(v))
    return {"window": window, "upper": float(upper), "lower": float(lower) if lower > least else None}
