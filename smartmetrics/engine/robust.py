"""Robust statistics for series with incidents and gaps: medians, MAD, trimmed variance, Theil-Sen.

Small pure functions used tens of times per series by `periods` and `features`, so they avoid
`np.median`'s overhead where one partition will do.
"""

from __future__ import annotations

from functools import lru_cache

import bottleneck as bn
import numpy as np

_MAD = 1.4826  # MAD to standard deviation, for Gaussian noise


def partitioned(x: np.ndarray, kth: int | list[int]) -> np.ndarray:
    """`np.partition(x, kth)`, or `np.sort(x)` (a partition for every kth) where `x` repeats values:
    numpy's introselect takes ten times as long as a sort on an array made mostly of one value (a
    sparse counter's zeros, a gauge's resting level), and these medians run tens of times a series.

    >>> partitioned(np.array([3.0, 0.0, 0.0, 1.0]), 1)[1]
    np.float64(0.0)
    """
    if len(x) > 2 * _PROBE and _repeats(x):
        return np.sort(x)
    return np.partition(x, kth)


_PROBE = 31  # values sampled to tell a series that repeats values from one that does not


def _repeats(x: np.ndarray) -> bool:
    """Whether a sample of `_PROBE` values spread over `x` holds the same value twice (a value that
    fills a tenth of `x` shows up twice more often than not; distinct floats never do)."""
    sample = np.sort(x[::len(x) // _PROBE][:_PROBE])
    return bool((sample[1:] == sample[:-1]).any())


def upper_median(x: np.ndarray) -> float:
    """The median by one partition (the upper of the two middle values for an even count): robust
    statistics here run tens of times per series, and `np.median`'s overhead is most of their cost.

    >>> upper_median(np.array([3.0, 1.0, 2.0, 10.0]))
    3.0
    """
    k = len(x) // 2
    return float(partitioned(x, k)[k])


def median(x: np.ndarray) -> np.floating:
    """`np.median(x)`, the same bits, for a 1-D float64 array without its per-call overhead (the same
    partition and the same mean of the middle value(s); NaN if `x` holds one); anything else goes
    to `np.median`. The models take hundreds of medians of short arrays per fit.

    >>> float(median(np.array([3.0, 1.0, 2.0, 10.0]))), float(median(np.array([1.0, np.nan, 0.0])))
    (2.5, nan)
    """
    n = x.size
    if type(x) is not np.ndarray or x.ndim != 1 or x.dtype != np.float64 or n == 0:
        return np.median(x)
    h = n // 2
    if n % 2:
        part = partitioned(x, [h, -1])
        middle = part[h:h + 1]
    else:
        part = partitioned(x, [h - 1, h, -1])
        middle = part[h - 1:h + 1]
    if np.isnan(part[-1]):
        return part[-1]
    return np.add.reduce(middle, axis=0) / len(middle)


def nanmedian_columns(x: np.ndarray) -> np.ndarray:
    """`np.nanmedian(x, axis=0)`, the same bits, for a 2-D float64 array of fewer than 600 rows with
    a finite value in every column and no infinity, without the masked array numpy builds for it:
    the same sort (NaN filled with +inf, the same argsort) and the same mean of the middle pair.
    Anything else goes to `np.nanmedian`.

    >>> nanmedian_columns(np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])).tolist()
    [2.0, 3.0]
    """
    if type(x) is not np.ndarray or x.ndim != 2 or x.dtype != np.float64 or not 0 < x.shape[0] < 600:
        return np.nanmedian(x, axis=0)
    nan = np.isnan(x)
    counts = x.shape[0] - nan.sum(axis=0)
    if not counts.all() or np.isinf(x).any():
        return np.nanmedian(x, axis=0)
    order = np.where(nan, np.inf, x).argsort(axis=0)
    high = counts // 2
    low = np.where(counts % 2 == 1, high, high - 1)
    cols = np.arange(x.shape[1])
    middle = np.vstack((x[order[low, cols], cols], x[order[high, cols], cols]))
    return np.true_divide(np.add.reduce(middle, axis=0), 2.0)


def robust_sd(x: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (0 for fewer than 2 points).

    >>> round(robust_sd(np.array([1.0, 2.0, 3.0, 4.0, 100.0])), 3)
    1.483
    """
    if len(x) < 2:
        return 0.0
    return _MAD * upper_median(np.abs(x - upper_median(x)))


def trimmed_var(x: np.ndarray, trim: float = 0.02) -> float:
    """Mean squared deviation from the median after dropping the `trim` share of largest deviations.

    Unlike MAD it sees a cycle that spends most of its time at one level (a weekend dip, a cron
    burst); like MAD it ignores the few points of an incident.

    >>> trimmed_var(np.r_[np.zeros(98), 1.0, 1000.0], trim=0.02)
    0.0
    """
    n = len(x)
    if n < 2:
        return 0.0
    keep = max(1, int(n * (1 - trim)))
    sq = (x - upper_median(x)) ** 2
    return float(np.mean(np.partition(sq, keep - 1)[:keep]))


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation across NaN gaps, flat beyond the first and last finite points."""
    ok = np.isfinite(values)
    if ok.all() or not ok.any():
        return values.astype(np.float64)
    idx = np.arange(len(values))
    return np.interp(idx, idx[ok], values[ok])


def block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Means of consecutive blocks of `factor` points (NaN-aware; an all-NaN block stays NaN)."""
    if factor <= 1:
        return x
    m = len(x) // factor * factor
    blocks = x[:m].reshape(-1, factor)
    means = blocks.mean(axis=1)
    if np.isfinite(means).all():
        return means
    ok = np.isfinite(blocks)
    count = ok.sum(axis=1)
    total = np.where(ok, blocks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def theil_sen_slope(y: np.ndarray) -> float:
    """Median of the slopes between all pairs of points (Theil-Sen): a trend estimate that a level shift
    or a weekly cycle only nudges, where a least-squares line or week-over-week differences follow them.

    >>> theil_sen_slope(np.array([0.0, 1.0, 2.0, 30.0, 4.0]))
    1.0
    """
    y = y[np.isfinite(y)]
    if len(y) < 2:
        return 0.0
    i, j = pair_indices(len(y))
    return float(median((y[j] - y[i]) / (j - i)))


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.triu_indices(n, k=1)`: the (i, j) index pairs i < j, read-only and built once per n up to
    `_CACHED_PAIRS` (Theil-Sen slopes over a few dozen points run for every model fit).

    >>> [a.tolist() for a in pair_indices(3)]
    [[0, 0, 1], [1, 2, 2]]
    """
    return _pairs(n) if n <= _CACHED_PAIRS else np.triu_indices(n, k=1)


_CACHED_PAIRS = 64  # all of them together take under 1 MB


@lru_cache(maxsize=None)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def rolling_median(x: np.ndarray, width: int) -> np.ndarray:
    """`pd.Series(x).rolling(width, center=True, min_periods=1).median().to_numpy()`, the same values
    (NaN and infinities are missing values, as pandas takes them; NaN where a window holds none; a
    window holding both -0.0 and 0.0 may give the other zero), by bottleneck's double heap: 10 to 20
    times as fast as pandas on two weeks at 5 minutes, without importing pandas in a fit's worker.

    >>> rolling_median(np.array([1.0, 9.0, np.nan, 3.0, 4.0, 5.0, 6.0]), 6).tolist()
    [5.0, 3.0, 3.5, 4.0, 5.0, 4.5, 4.5]
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x.copy()
    after = (width - 1) // 2  # pandas centres an even window one value early
    padded = np.concatenate((np.full(width - 1 - after, np.nan), np.where(np.isinf(x), np.nan, x),
                             np.full(after, np.nan)))
    return bn.move_median(padded, width, min_count=1)[width - 1:]  # trailing windows, ending `after` later


def rolling_extremes(x: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """The maximum and the minimum of each centred window of `2 * half + 1` values, NaN and infinities
    ignored (NaN where a window holds none): `pd.Series(x).rolling(2 * half + 1, center=True,
    min_periods=1)`'s `max()` and `min()`, the same values (bottleneck's moving extremes).

    >>> [a.tolist() for a in rolling_extremes(np.array([1.0, np.nan, 3.0, np.inf, np.nan, np.nan]), 1)]
    [[1.0, 3.0, 3.0, 3.0, nan, nan], [1.0, 1.0, 3.0, 3.0, nan, nan]]
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x.copy(), x.copy()
    width = 2 * half + 1
    padded = np.concatenate((np.full(half, np.nan), np.where(np.isinf(x), np.nan, x), np.full(half, np.nan)))
    return bn.move_max(padded, width, min_count=1)[width - 1:], bn.move_min(padded, width, min_count=1)[width - 1:]


def label_runs(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """`scipy.ndimage.label` of a 1-D boolean array: each run of True numbered 1, 2, ... in order, 0
    elsewhere; and how many runs. (The engine's only use of scipy was this and its kin below, and
    importing it cost each worker process 0.15 s.)

    >>> label_runs(np.array([0, 1, 1, 0, 1], dtype=bool))
    (array([0, 1, 1, 0, 2], dtype=int32), 2)
    """
    mask = np.asarray(mask, dtype=bool)
    starts = run_starts(mask)
    return (np.cumsum(starts) * mask).astype(np.int32), int(starts.sum())


def run_starts(mask: np.ndarray) -> np.ndarray:
    """True at the first point of each run of True in the 1-D `mask`.

    >>> run_starts(np.array([1, 1, 0, 1], dtype=bool)).astype(int).tolist()
    [1, 0, 0, 1]
    """
    mask = np.asarray(mask, dtype=bool)
    starts = mask.copy()
    starts[1:] &= ~mask[:-1]
    return starts


def bridge(mask: np.ndarray, points: int) -> np.ndarray:
    """`mask` with each gap of at most `points` False places between two True ones filled (a 1-D
    closing that leaves both ends as they are).

    >>> bridge(np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0], dtype=bool), 2).astype(int).tolist()
    [0, 1, 1, 1, 1, 0, 0, 0, 1, 0]
    """
    mask = np.asarray(mask, dtype=bool)
    if points < 1 or not mask.any():
        return mask.copy()
    gaps, count = label_runs(~mask)
    fill = np.bincount(gaps, minlength=count + 1) <= points
    fill[0] = False  # label 0: the True places themselves
    fill[gaps[0]] &= bool(mask[0])  # a gap at either end is not between two True places
    fill[gaps[-1]] &= bool(mask[-1])
    return mask | fill[gaps]


def run_maxima(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The largest of `values` in each run of True in `mask`, in order (`ndimage.maximum` per label).

    >>> run_maxima(np.array([5.0, 1.0, 3.0, 9.0, 2.0]), np.array([1, 1, 1, 0, 1], dtype=bool)).tolist()
    [5.0, 2.0]
    """
    mask = np.asarray(mask, dtype=bool)
    inside = np.flatnonzero(mask)
    if len(inside) == 0:
        return np.zeros(0)
    return np.maximum.reduceat(np.asarray(values, dtype=np.float64)[inside], np.flatnonzero(run_starts(mask)[inside]))


def median3(x: np.ndarray) -> np.ndarray:
    """Median of each value and its two neighbours, the ends repeated (`ndimage.median_filter(x, 3,
    mode="nearest")` for finite values).

    >>> median3(np.array([1.0, 9.0, 2.0, 3.0])).tolist()
    [1.0, 2.0, 3.0, 3.0]
    """
    if len(x) == 0:
        return np.asarray(x, dtype=np.float64).copy()
    padded = np.concatenate((x[:1], x, x[-1:]))
    a, b, c = padded[:-2], padded[1:-1], padded[2:]
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Each True spread `steps` places either way (`ndimage.binary_dilation(mask, iterations=steps)`
    in 1-D).

    >>> dilate(np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=bool), 2).astype(int).tolist()
    [0, 1, 1, 1, 1, 1, 0, 0]
    """
    if steps < 1:
        raise ValueError("dilate needs steps >= 1")
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    for k in range(1, min(steps, len(out) - 1) + 1):
        out[k:] |= mask[:-k]
        out[:-k] |= mask[k:]
    return out
