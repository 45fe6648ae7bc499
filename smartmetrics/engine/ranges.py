"""Natural ranges: a band never leaves the values its series can take.

A rate, a ratio, a latency or a utilisation is never below 0; a ratio or a utilisation is never
above 1 (or 100 for a percentage). A band edge beyond that promises nothing and misleads the reader
of a dashboard (`smartmetrics_yhat_lower` of an error ratio at -0.0003), so every band is clipped
to its series' range: in the fit, after a release or a follow moves it, and in what the daemon
serves. The range is the baseline's `range: [lo, hi]` where configured (either may be null), else
inferred: the floor 0 for a history that never went below 0, and the ceiling 1 or 100 for a
history that never went below 0 and whose name (the alias, the expr, the series' metric name)
says ratio, utilisation or percent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

UNIT_INTERVAL = re.compile(r"ratio|fraction|utili[sz]ation|(^|[^a-z])util([^a-z]|$)|saturation|availability",
                           re.IGNORECASE)
PERCENT = re.compile(r"percent|pct|(^|[^a-z])perc([^a-z]|$)", re.IGNORECASE)

Range = tuple[float | None, float | None]


def natural_range(values: np.ndarray, hints: str = "", configured: Sequence[float | None] | None = None) -> Range:
    """`(lo, hi)` a band of these values may not leave (None: unbounded on that side).

    >>> natural_range(np.array([0.01, 0.2]), "error_ratio"), natural_range(np.array([3.0, 70.0]), "gpu_util")
    ((0.0, 1.0), (0.0, 100.0))
    >>> natural_range(np.array([0.5, 2.0]), "latency_seconds"), natural_range(np.array([-1.0, 2.0]), "ratio")
    ((0.0, None), (None, None))
    >>> natural_range(np.array([0.5]), "x", [None, 10.0])
    (None, 10.0)
    """
    if configured is not None:
        lo, hi = configured
        return (None if lo is None else float(lo), None if hi is None else float(hi))
    y = np.asarray(values, dtype=np.float64)
    y = y[np.isfinite(y)]
    if len(y) == 0 or y.min() < 0:
        return None, None
    top = float(y.max())
    if PERCENT.search(hints) and top <= 100.0:
        return 0.0, 100.0
    if UNIT_INTERVAL.search(hints):
        if top <= 1.0:
            return 0.0, 1.0
        if top <= 100.0:
            return 0.0, 100.0
    return 0.0, None


def clip_values(values: np.ndarray, lo, hi) -> np.ndarray:
    """`values` inside `[lo, hi]`; either bound may be None, a number or an array of them per value
    (NaN: no bound there). NaN values stay NaN.

    >>> clip_values(np.array([-1.0, 0.5, 2.0, np.nan]), np.array([0.0, 0.0, np.nan, 0.0]), 1.0).tolist()
    [0.0, 0.5, 1.0, nan]
    """
    with np.errstate(invalid="ignore"):
        if lo is not None:
            values = np.where(values < lo, lo, values)
        if hi is not None:
            values = np.where(values > hi, hi, values)
    return values


def clip_band(yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              bounds: tuple | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band with every edge and yhat inside `bounds` (`clip_values`' bounds; None: unbounded).

    >>> [a.tolist() for a in clip_band(np.array([0.9]), np.array([-0.1]), np.array([1.2]), (0.0, 1.0))]
    [[0.9], [0.0], [1.0]]
    """
    if bounds is None:
        return yhat, lower, upper
    lo, hi = bounds
    return clip_values(yhat, lo, hi), clip_values(lower, lo, hi), clip_values(upper, lo, hi)


def finite_number(value: Any) -> float | None:
    """`value` as a float if it is a finite number (not a bool), else None: what a stored JSON field
    must be before it is used.

    >>> finite_number(3), finite_number(True), finite_number("1"), finite_number(float("nan"))
    (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    return float(value)


def stored_range(training: dict | None) -> Range | None:
    """A fit's `training.range` as a `(lo, hi)` pair; None when absent or malformed.

    >>> stored_range({"range": [0.0, None]}), stored_range({"range": "x"}), stored_range(None)
    ((0.0, None), None, None)
    """
    value = (training or {}).get("range")
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    out = []
    for v in value:
        if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v)):
            return None
        out.append(None if v is None else float(v))
    return out[0], out[1]
