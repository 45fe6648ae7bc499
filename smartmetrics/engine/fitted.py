"""From a fit to the band that is stored: the check a band passes before it may replace the one
served (`band_problem`), and its stored form (`band_from_fitted`: forecast table plus the metadata an
operator wants to see, JSON-safe).
"""

from __future__ import annotations

import numpy as np

from smartmetrics.engine.calendars import in_windows
from smartmetrics.engine.ensemble import FittedSeries
from smartmetrics.engine.series import Series
from smartmetrics.engine.state import SeriesBand, json_safe

FAR = 1000.0  # spans of the history beyond which a band edge is no band


def lead_model(fitted: FittedSeries) -> str:
    """The member with the largest weight (what `smartmetrics_series{model=...}` reports)."""
    members = [m for m in fitted.members if m.get("weight", 0) > 0] or fitted.members
    return max(members, key=lambda m: m.get("weight", 0))["name"] if members else "none"


def band_from_fitted(fitted: FittedSeries, fitted_at: float) -> SeriesBand:
    """The stored form of a fit: its forecast table and the metadata an operator wants to see."""
    meta = {
        "fitted_at": fitted_at,
        "curve_type": fitted.classification.get("curve_type"),
        "classification": fitted.classification,
        "model": lead_model(fitted),
        "members": fitted.members,
        "coverage": fitted.coverage,
        "training": fitted.training,
        "data_start": fitted.data_start,
        "data_end": fitted.data_end,
    }
    # The table starts one step after the data; the daemon exports from the moment the fit lands, so
    # the first forecast point also stands for the step before it (from the last observed point on).
    if len(fitted.timestamps) == 0:
        raise ValueError("fit returned an empty forecast table")
    start = int(fitted.timestamps[0]) - int(fitted.step)
    cols = [np.concatenate([a[:1], a]) for a in (fitted.yhat, fitted.lower, fitted.upper)]
    return SeriesBand(dict(fitted.labels), start, int(fitted.step), *cols, meta=json_safe(meta))


def band_problem(fitted: FittedSeries, series: Series) -> str | None:
    """Why a fitted band must not replace the one served, or None when it is sane: every edge finite
    (unless the fit withheld the band, or withdrew it for a maintenance window), lower <= yhat <=
    upper, no edge orders of magnitude beyond anything the series showed, and some width where the
    series varies.

    >>> from smartmetrics.engine.ensemble import FittedSeries
    >>> s = Series({}, np.arange(3) * 60, np.array([1.0, 2.0, 3.0]), 60)
    >>> f = FittedSeries({}, 60, {}, [], {}, np.arange(2), np.zeros(2), np.full(2, -5e-11), np.full(2, 5e-11), 0, 120)
    >>> band_problem(f, s)  # what NaN source values once stored
    'a band of zero width on a series that varies'
    >>> flat = Series({}, np.arange(3) * 60, np.ones(3), 60)  # a flat series' usual band is sane
    >>> band_problem(FittedSeries({}, 60, {}, [], {}, np.arange(2), np.ones(2), np.full(2, 0.95),
    ...                           np.full(2, 1.05), 0, 120), flat) is None
    True
    """
    if fitted.training.get("withheld"):
        return None
    served = ~in_windows(fitted.timestamps, tuple(tuple(w) for w in fitted.training.get("withdrawn", ())))
    yhat, lower, upper = fitted.yhat[served], fitted.lower[served], fitted.upper[served]
    if not (np.isfinite(yhat).all() and np.isfinite(lower).all() and np.isfinite(upper).all()):
        return "the band is not finite"
    slack = 1e-9 * (1.0 + np.abs(yhat))
    if np.any(lower > yhat + slack):
        return "lower edge above yhat"
    if np.any(upper < yhat - slack):
        return "upper edge below yhat"
    seen = series.values[np.isfinite(series.values)]
    if len(seen) == 0:
        return None
    span, size = float(np.ptp(seen)), float(np.max(np.abs(seen)))
    reach = size + FAR * max(span, 1e-3 * size, 1.0)  # a flat series has no span: its size, or 1, stands in
    if np.any(np.abs(lower) > reach) or np.any(np.abs(upper) > reach):
        return f"edges beyond {reach:.3g}, orders of magnitude past anything the series showed"
    if span > 0 and np.all(upper - lower <= 1e-9 * max(span, size)):
        return "a band of zero width on a series that varies"
    return None
