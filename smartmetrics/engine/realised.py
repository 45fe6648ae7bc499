"""Coverage realised since the last retrain: the share of observed points inside the band served.

The fit promises a coverage (the sensitivity's nominal, and per series the held-out estimate of
`bands.held_out_coverage`); this is the check against what happened. The daemon tallies every point
of every series as it arrives (`tally`, on the discover schedule), against the band it served for
that point (after follow and release moves, clipped to the natural range as the exporter serves it),
and exports `smartmetrics_band_coverage` from the tally. A retrain writes fresh bands, so the tally
restarts with each; it is stored with the band, so a restart keeps it. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from smartmetrics.engine.ranges import clip_values, finite_number, stored_range
from smartmetrics.engine.series import on_grid
from smartmetrics.engine.state import SeriesBand

KEY = "realised"  # the tally in a band's meta: `since`, `until` (Unix seconds), `points`, `inside`


def tally(band: SeriesBand, observed: tuple[np.ndarray, np.ndarray] | None, now: float) -> SeriesBand:
    """The band with the observed points after its last tally (and up to `now`) counted in or out
    (the same object when there is nothing new).

    >>> b = SeriesBand({}, 0, 60, np.zeros(5), np.full(5, -1.0), np.ones(5))
    >>> b = tally(b, (np.array([60, 120, 180]), np.array([0.5, 3.0, np.nan])), 200)
    >>> b.meta["realised"], realised_coverage(b.meta)
    ({'since': 60, 'until': 120, 'points': 2, 'inside': 1}, 0.5)
    """
    if observed is None or len(observed[0]) == 0:
        return band
    record = _record(band.meta)
    after = _after(band, record)
    times, values = (np.asarray(a, dtype=np.float64) for a in observed)
    keep = (times > after) & (times <= now) & np.isfinite(values)
    times, values = times[keep], values[keep]
    grid = band.start + np.arange(len(band.yhat), dtype=np.int64) * band.step
    _, lower, upper = on_grid(grid, times, band.yhat, band.lower, band.upper)
    bounds = stored_range(band.meta.get("training") if isinstance(band.meta, Mapping) else None)
    if bounds is not None:
        lower, upper = clip_values(lower, *bounds), clip_values(upper, *bounds)
    served = np.isfinite(lower) & np.isfinite(upper)
    if not served.any():
        return band
    inside = served & (values >= lower) & (values <= upper)
    record = {
        "since": int(record.get("since", times[served][0])), "until": int(times[served][-1]),
        "points": int(_number(record.get("points"), 0)) + int(served.sum()),
        "inside": int(_number(record.get("inside"), 0)) + int(inside.sum()),
    }
    return SeriesBand(dict(band.labels), band.start, band.step, band.yhat, band.lower, band.upper,
                      {**band.meta, KEY: record})


def realised_coverage(meta: Mapping[str, Any]) -> float | None:
    """Share of the tallied points inside the band; None before any point was tallied or when the
    stored tally is not a sane pair of counts."""
    record = _record(meta)
    points, inside = _number(record.get("points"), 0), _number(record.get("inside"), -1)
    if points <= 0 or not 0 <= inside <= points:
        return None
    return inside / points


def oldest_tally(bands: tuple[SeriesBand, ...]) -> float:
    """The earliest time any of `bands` still needs points after (its last tally, or its start)."""
    return min((_after(b, _record(b.meta)) for b in bands), default=np.inf)


def _record(meta: Any) -> Mapping[str, Any]:
    record = meta.get(KEY) if isinstance(meta, Mapping) else None
    return record if isinstance(record, Mapping) else {}


def _after(band: SeriesBand, record: Mapping[str, Any]) -> float:
    """Points after this time are new: the last tallied one, or the table's first point (the data's end)."""
    return max(_number(record.get("until"), -np.inf), float(band.start))


def _number(value: Any, default: float) -> float:
    number = finite_number(value)
    return default if number is None else number
