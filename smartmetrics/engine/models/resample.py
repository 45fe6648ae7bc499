"""Downsampling helpers for the heavier models: a fine series as bucket means on a coarser grid."""

from __future__ import annotations

import numpy as np

from smartmetrics.engine.models.base import finite_points
from smartmetrics.engine.series import Series


def bucket_width(step: int, period: int, max_per_period: int) -> int:
    """A multiple of `step` dividing `period` into at most `max_per_period` buckets (e.g. hourly).

    >>> bucket_width(300, 86400, 24), bucket_width(3600, 86400, 48)
    (3600, 3600)
    """
    width = max(step, -(-period // max_per_period))
    width = -(-width // step) * step
    while period % width and width < period:
        width += step
    return width


def downsample(series: Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket start times, bucket means) over consecutive `width`-second buckets, gaps interpolated."""
    t, y = finite_points(series)
    if len(t) == 0:
        raise ValueError("no finite points to downsample")
    first = int(t[0]) // width * width
    idx = (t - first) // width
    n = int(idx[-1]) + 1
    sums = np.bincount(idx, weights=y, minlength=n)
    counts = np.bincount(idx, minlength=n)
    grid = first + width * np.arange(n, dtype=np.int64)
    means = np.full(n, np.nan)
    means[counts > 0] = sums[counts > 0] / counts[counts > 0]
    ok = np.isfinite(means)
    means = np.interp(np.arange(n), np.flatnonzero(ok), means[ok])
    return grid, means
