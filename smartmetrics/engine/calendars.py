"""Local time, holidays and planned windows around the pure fit (issue 25).

The fit knows only Unix seconds, and reads time of day and day of week from them. So a baseline in a
time zone is fitted on its series moved onto the local clock (each instant plus its UTC offset, from
the zone's transitions that `smartmetrics.settings` reads from zoneinfo) and its forecast table read
back at the UTC instants: a daylight-saving switch moves the daily profile with the clock. Holidays
(local day numbers) are left out of training, and a holiday's band also covers what earlier holidays
and weekend days showed at that time of day. Maintenance windows are left out of training and the
band is withdrawn (NaN: no alert can fire) while they last; expected changes are left out of training
too, and the band is widened by their factor on their side(s) while they last (`widen_band`).
"""

from __future__ import annotations

import numpy as np

from smartmetrics.engine.series import Series, on_grid

DAY = 86400
Transitions = tuple[tuple[int, int], ...]
"""A zone's UTC offsets as ((since, offset seconds), ...), ascending; the first holds before it too."""
Windows = tuple[tuple[int, int], ...]
"""Time windows [start, end) in Unix seconds."""
Widenings = tuple[tuple[int, int, float, str], ...]
"""Expected changes as (start, end, factor, direction `up` | `down` | `both`), each over [start, end)."""


def utc_offsets(timestamps: np.ndarray, transitions: Transitions) -> np.ndarray:
    """The UTC offset (seconds) at each of `timestamps`; 0 without transitions.

    >>> utc_offsets(np.array([0, 99, 100, 250]), ((0, 3600), (100, 7200), (200, 3600))).tolist()
    [3600, 3600, 7200, 3600]
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if not transitions:
        return np.zeros(ts.shape, dtype=np.int64)
    since, offset = (np.array(c, dtype=np.int64) for c in zip(*transitions))
    return offset[np.maximum(np.searchsorted(since, ts, side="right") - 1, 0)]


def to_local(series: Series, transitions: Transitions) -> Series:
    """The series on the local clock: each point at its instant plus its UTC offset, on a regular grid.
    The hour a spring switch skips is a gap; of the hour an autumn switch repeats the later pass is
    kept, and points whose local time lies after the last point's (a switch in the last hour) are
    dropped, so the forecast continues from the last point's local time.

    >>> s = Series({}, np.arange(0, 6) * 1800, np.arange(6.0), 1800)
    >>> to_local(s, ((0, 0), (3600, 3600))).values.tolist()  # one hour skipped
    [0.0, 1.0, nan, nan, 2.0, 3.0, 4.0, 5.0]
    >>> to_local(s, ((0, 3600), (3600, 0))).values.tolist()  # one hour repeated
    [2.0, 3.0, 4.0, 5.0]
    """
    if len(series) == 0:
        return series
    local = series.timestamps + utc_offsets(series.timestamps, transitions)
    keep = local <= local[-1]
    start = int(local[keep].min())
    n = (int(local[-1]) - start) // series.step + 1
    values = np.full(n, np.nan)
    values[(local[keep] - start) // series.step] = series.values[keep]
    grid = start + series.step * np.arange(n, dtype=np.int64)
    return Series(series.labels, grid, values, series.step, series.name, series.meta)


def local_horizon(end: int, horizon: int, step: int, transitions: Transitions) -> int:
    """The local fit's horizon that covers the UTC table `end + step .. end + horizon` once moved onto
    the local clock (longer by the offset gained in between, in whole steps)."""
    at = end + step * np.arange(0, horizon // step + 1, dtype=np.int64)
    gained = int(np.max(utc_offsets(at, transitions) - utc_offsets(np.array([end]), transitions)[0]))
    return horizon + step * -(-max(gained, 0) // step)


def table_at_utc(local_ts: np.ndarray, columns: tuple[np.ndarray, ...], utc_ts: np.ndarray,
                 transitions: Transitions) -> tuple[np.ndarray, ...]:
    """A local forecast table's columns read at the UTC instants `utc_ts` (their local times). An
    hour repeated just after the table's start may begin before it: it reads the table's first row."""
    at = utc_ts + utc_offsets(utc_ts, transitions)
    return on_grid(local_ts, np.maximum(at, local_ts[0]) if len(local_ts) else at, *columns)


def active_windows(timestamps: np.ndarray, values: np.ndarray, step: int) -> Windows:
    """The runs of finite non-zero points of a marker series as windows [first point, last point + step).

    >>> active_windows(np.arange(6) * 60, np.array([np.nan, 1.0, 2.0, 0.0, 1.0, np.nan]), 60)
    ((60, 180), (240, 300))
    """
    on = np.concatenate(([False], np.isfinite(values) & (np.nan_to_num(values) != 0), [False]))
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    ts = np.asarray(timestamps, dtype=np.int64)
    return tuple((int(ts[a]), int(ts[b - 1]) + step) for a, b in zip(edges[::2], edges[1::2]))


def merged_windows(windows: Windows) -> Windows:
    """Overlapping or touching windows joined, ascending.

    >>> merged_windows(((5, 9), (0, 3), (3, 4), (8, 12)))
    ((0, 4), (5, 12))
    """
    out: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def in_windows(timestamps: np.ndarray, windows: Windows) -> np.ndarray:
    """Whether each timestamp lies in one of the windows [start, end).

    >>> in_windows(np.array([0, 10, 19, 20]), ((10, 20),)).tolist()
    [False, True, True, False]
    """
    ts = np.asarray(timestamps)
    inside = np.zeros(ts.shape, dtype=bool)
    for start, end in windows:  # a handful of configured windows, each vectorised over the points
        inside |= (ts >= start) & (ts < end)
    return inside


def widen_band(ts: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               widened: Widenings) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) with each edge on an expected change's side moved away from yhat to `factor`
    times its distance, at the timestamps `ts` inside the change's window (overlapping changes: the
    larger factor).

    >>> widen_band(np.arange(4), np.zeros(4), -np.ones(4), np.ones(4), ((1, 3, 3.0, "up"),))
    (array([-1., -1., -1., -1.]), array([1., 3., 3., 1.]))
    """
    up, down = np.ones(len(ts)), np.ones(len(ts))
    for start, end, factor, direction in widened:
        inside = in_windows(ts, ((start, end),))
        if direction in ("up", "both"):
            up = np.where(inside, np.maximum(up, factor), up)
        if direction in ("down", "both"):
            down = np.where(inside, np.maximum(down, factor), down)
    return yhat - down * (yhat - lower), yhat + up * (upper - yhat)


def band_at(now: float, values: np.ndarray, ok: np.ndarray, withdrawn: Windows,
            widened: Widenings) -> tuple[np.ndarray, np.ndarray]:
    """Every series' band at `now` (`values` (3, n): yhat, lower, upper; `ok`: which have one) as planned
    events make it: none in a maintenance window, widened in an expected change (`widen_band`).

    >>> band_at(5, np.array([[0.0], [-1.0], [1.0]]), np.array([True]), (), ((0, 9, 2.0, "down"),))
    (array([[ 0.],
           [-2.],
           [ 1.]]), array([ True]))
    >>> band_at(5, np.zeros((3, 1)), np.array([True]), ((5, 6),), ())[1]
    array([False])
    """
    at = np.full(len(ok), now)
    if in_windows(at[:1], withdrawn).any():
        return values, np.zeros_like(ok)
    lower, upper = widen_band(at, values[0], values[1], values[2], widened)
    return np.stack([values[0], lower, upper]), ok


def masked(series: Series, out: np.ndarray) -> Series:
    """The series with the points where `out` holds blanked (NaN)."""
    if not out.any():
        return series
    return Series(series.labels, series.timestamps, np.where(out, np.nan, series.values), series.step,
                  series.name, series.meta)


def on_days(timestamps: np.ndarray, days: tuple[int, ...]) -> np.ndarray:
    """Whether each (local) timestamp falls on one of the day numbers `days` (days since 1970-01-01).

    >>> on_days(np.array([0, 86399, 86400, 2 * 86400]), (0, 2)).tolist()
    [True, True, False, True]
    """
    return np.isin(np.asarray(timestamps) // DAY, np.asarray(days, dtype=np.int64))


def holiday_band(ts: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, history: Series,
                 holidays: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On holidays among the (local) table timestamps `ts`, the band also covers itself re-centred on
    each earlier holiday and weekend day at the same time of day (an hourly median of the raw local
    `history`), and yhat moves to their median: a holiday is expected to look like a Sunday, or like
    the holidays before it, while a weekday level stays inside too (a holiday the metric ignores).

    >>> t = np.arange(0, 7 * DAY, 3600)  # Thursday 1970-01-01 to Wednesday; Sat, Sun and Monday quiet
    >>> s = Series({}, t, np.where(np.isin(t // DAY, (2, 3, 4)), 2.0, 10.0), 3600)
    >>> y, lo, hi = holiday_band(np.array([7, 8]) * DAY, np.full(2, 10.0), np.full(2, 9.0), np.full(2, 11.0),
    ...                          s, (4, 7))
    >>> y.tolist(), lo.tolist(), hi.tolist()  # Thursday a holiday, Friday not
    ([2.0, 10.0], [1.0, 9.0], [11.0, 11.0])
    """
    today = on_days(ts, holidays)
    if not today.any() or len(history) == 0:
        return yhat, lower, upper
    from smartmetrics.engine.robust import rolling_median  # here: serving applies calendar events without it

    width = max(1, 3600 // history.step)
    smooth = rolling_median(history.values, width)
    days = int((ts.max() - history.start) // DAY)
    earlier = ts[np.newaxis, today] - np.arange(1, days + 1)[:, np.newaxis] * DAY  # a row per day back
    like = on_days(earlier, holidays) | ((earlier // DAY + 3) % 7 >= 5)
    pos = np.clip((earlier - history.start) // history.step, 0, len(history) - 1)
    ref = np.where(like & (earlier >= history.start) & (earlier <= history.end), smooth[pos], np.nan)
    seen = np.isfinite(ref).any(axis=0)
    shift = ref - yhat[today]
    lo = np.minimum(lower[today], np.nanmin(np.where(seen, lower[today] + shift, np.inf), axis=0))
    hi = np.maximum(upper[today], np.nanmax(np.where(seen, upper[today] + shift, -np.inf), axis=0))
    centre = np.where(seen, np.nanmedian(np.where(seen, ref, 0.0), axis=0), yhat[today])
    lower, upper, yhat = lower.copy(), upper.copy(), yhat.copy()
    lower[today], upper[today], yhat[today] = lo, hi, np.clip(centre, lo, hi)
    return yhat, lower, upper
