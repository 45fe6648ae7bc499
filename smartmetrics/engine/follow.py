"""Following a new level: a band that moves to where a series has stayed, before the next retrain.

A series that leaves its band and stays out on one side (a deploy without a release marker, a
tenant moved onto this shard, a scale-up) has found a new level, and a band fitted before it would
alert until the next daily retrain and mean nothing for the rest of the day. Once `SHARE` of the
observed points of the trailing `after` seconds (and the latest one) are beyond the same edge, the
band from there to the end of its table also covers itself moved by the median difference between
the series and yhat over the later half of that window (`releases.level_shift`: the level it
settled at), and yhat moves to that level. The old level stays inside the band, so a rollback or
the end of an incident raises no new alert; the next retrain learns the new level (cleaning cuts
the history at a level shift). When the series goes back (the same share of the same window nearer
the old level than the new one), yhat goes back with it and the band still covers both: the
expected value drawn in Grafana is where the series is, not where an outage took it for an hour.

The move comes after the onset has alerted: it spares the rest of the day's alerts on a level that
has become normal, not the first one. `absorb` says which moves are followed, as for releases:
`down` for error rates and latencies, whose rise should keep alerting. The next check looks only at
points after the last one (moved or not), so a level that keeps drifting away is followed step by
step, one `after` at a time.

Everything here is a pure function of arrays, shared by the daemon (on a stored forecast table) and
the walk-forward backtest (on the replayed band), so both follow a level the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from smartmetrics.engine.ranges import finite_number
from smartmetrics.engine.releases import MIN_POINTS, absorbed, level_shift, moved, shift_limit
from smartmetrics.engine.series import on_grid
from smartmetrics.engine.state import SeriesBand

AFTER = 3600.0
"""Default time a series must stay beyond one edge before the band follows it."""
SHARE = 0.9
"""Share of the window's observed points that must be beyond that edge (noise may cross back)."""


def held_out(timestamps: np.ndarray, values: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             after: float, share: float = SHARE) -> tuple[int, int] | None:
    """`(first, at)`: the first index `at` whose trailing `after` seconds (all after `timestamps[0]`)
    hold at least `MIN_POINTS` observed points with a band, `share` of them and the point itself beyond
    the same edge; `first` is that window's first index. None: nowhere.

    >>> t = np.arange(10) * 600
    >>> held_out(t, np.array([0, 0, 0, 5, 5, 5, 5, 5, 5, 5.0]), np.full(10, -1.0), np.full(10, 1.0), 3000)
    (3, 7)
    """
    known = np.isfinite(values) & np.isfinite(lower) & np.isfinite(upper)
    with np.errstate(invalid="ignore"):
        sides = (known & (values > upper), known & (values < lower))
    return _held(timestamps, known, sides, after, share)


def held_back(timestamps: np.ndarray, values: np.ndarray, yhat: np.ndarray, shift: float, after: float,
              share: float = SHARE) -> tuple[int, int] | None:
    """As `held_out`, for a series back at the level a follow by `shift` left: nearer `yhat - shift`
    (the old level) than `yhat` (the followed one).

    >>> t = np.arange(8) * 600
    >>> held_back(t, np.array([9, 9, 9, 1, 1, 1, 1, 1.0]), np.full(8, 9.0), 8.0, 1800)
    (3, 5)
    """
    known = np.isfinite(values) & np.isfinite(yhat)
    with np.errstate(invalid="ignore"):
        back = known & ((values < yhat - shift / 2) if shift > 0 else (values > yhat - shift / 2))
    return _held(timestamps, known, (back,), after, share)


def _held(timestamps: np.ndarray, known: np.ndarray, sides: tuple[np.ndarray, ...], after: float,
          share: float) -> tuple[int, int] | None:
    """The first `(first, at)` whose trailing `after` seconds hold `share` of their known points on one of
    `sides`, the point itself included (see `held_out`)."""
    n = len(timestamps)
    if n == 0:
        return None
    first = np.searchsorted(timestamps, timestamps - after, side="right")
    c_known = _cumulative(known)
    n_known = c_known[1:] - c_known[first]
    whole = (timestamps - timestamps[0] >= after) & (n_known >= MIN_POINTS)
    hit = np.zeros(n, dtype=bool)
    for side in sides:
        c_side = _cumulative(side)
        hit |= whole & side & (c_side[1:] - c_side[first] >= share * n_known)
    idx = np.flatnonzero(hit)
    return (int(first[idx[0]]), int(idx[0])) if len(idx) else None


def _cumulative(mask: np.ndarray) -> np.ndarray:
    """Counts of true values before each index (one longer than `mask`)."""
    return np.concatenate(([0], np.cumsum(mask)))


def widen(arrays: list[np.ndarray], where: np.ndarray, shift: float) -> None:
    """Move `yhat` (the first array) by `shift` at `where`, and let each pair of edges after it
    (lower, upper, then any trailing-mean limits) cover both its old and its moved self, in place."""
    arrays[0][where] = moved(arrays[0][where], shift)
    for k, arr in enumerate(arrays[1:]):
        shifted = moved(arr[where], shift)
        arr[where] = np.fmin(arr[where], shifted) if k % 2 == 0 else np.fmax(arr[where], shifted)


def move_back(arrays: list[np.ndarray], where: np.ndarray, shift: float) -> None:
    """Move `yhat` (the first array) by `shift` at `where`, back to the level the series returned to,
    in place. The band already covers the old level; where the series came back further than that
    (below the old lower edge, above the old upper one), that edge also covers itself moved, so that
    yhat never leaves its band (a yhat beyond an edge makes that side zero wide: every point an alert).

    >>> a = [np.array([10.0, 10.0]), np.array([4.0, 4.0]), np.array([12.0, 12.0])]
    >>> move_back(a, np.array([True, True]), -8.0); [x.tolist() for x in a]
    [[2.0, 2.0], [0.0, 0.0], [12.0, 12.0]]
    >>> a = [np.array([10.0]), np.array([1.0]), np.array([12.0])]
    >>> move_back(a, np.array([True]), -8.0); [x.tolist() for x in a]
    [[2.0], [1.0], [12.0]]
    """
    arrays[0][where] = moved(arrays[0][where], shift)
    with np.errstate(invalid="ignore"):
        outside = where & ((arrays[0] < arrays[1]) | (arrays[0] > arrays[2]))
    if outside.any():
        widen([arrays[0].copy(), *arrays[1:3]], outside, shift)


def replay_follow(
    timestamps: np.ndarray, values: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    limits: tuple[np.ndarray, ...], periods: Iterable[tuple[int, int]], *, after: float = AFTER,
    absorb: str = "both",
) -> tuple[np.ndarray, ...]:
    """A walk-forward band that follows new levels: `(yhat, lower, upper, *limits)`, new arrays.

    `periods` are the `[start, stop)` spans each fitted model predicted; a model follows within its
    own span only (the next one is fitted on the new level). `limits` come in (lower, upper) pairs.
    """
    out = [np.array(a, dtype=np.float64, copy=True) for a in (yhat, lower, upper, *limits)]
    for start, stop in periods:
        rest = np.flatnonzero((timestamps >= start) & (timestamps < stop))
        last = None  # the shift of the follow in force
        while len(rest):
            found, back = _next_move(timestamps[rest], values[rest], out[0][rest], out[1][rest], out[2][rest],
                                     last, after)
            if found is None:
                break
            first, at = found
            window = rest[first:at + 1]
            shift = level_shift(values[window], out[0][window])
            rest = rest[at + 1:]
            if back:  # yhat, and the band only where yhat would leave it: it already covers the old level
                if shift is not None:
                    move_back(out, np.isin(np.arange(len(timestamps)), rest), shift)
                last = None
                continue
            last = absorbed(shift, absorb)
            if last is not None:
                widen(out, rest, last)
    return tuple(out)


def _next_move(timestamps: np.ndarray, values: np.ndarray, yhat: np.ndarray, lower: np.ndarray,
               upper: np.ndarray, last: float | None, after: float) -> tuple[tuple[int, int] | None, bool]:
    """The earlier of a level held beyond the band and (after a follow by `last`) a return to the old
    level: `((first, at) or None, whether it is the return)`."""
    found = held_out(timestamps, values, lower, upper, after)
    back = None if last is None else held_back(timestamps, values, yhat, last, after)
    if back is not None and (found is None or back[1] < found[1]):
        return back, True
    return found, False


def follow_band(band: SeriesBand, observed: tuple[np.ndarray, np.ndarray] | None, now: float, *,
                after: float = AFTER, absorb: str = "both") -> SeriesBand:
    """A stored band that follows the level `observed` (timestamps, values up to `now`) has stayed at
    (the same object when nothing changed). `meta["follow"]` records the last check that found one
    (`at`, `shift`: None when not absorbed, `count` of moves, and `back` once yhat went back to the
    old level), and later calls look only after it."""
    if observed is None or len(observed[0]) == 0:
        return band
    record = band.meta.get("follow") if isinstance(band.meta.get("follow"), dict) else {}
    since = max(float(record.get("at", -np.inf)), band.start - band.step)
    last = None if record.get("back") else finite_number(record.get("shift"))
    times, values = (np.asarray(a, dtype=np.float64) for a in observed)
    keep = (times > since) & (times <= now)
    times, values = times[keep], values[keep]
    grid = band.start + np.arange(len(band.yhat), dtype=np.int64) * band.step
    yhat, lower, upper = on_grid(grid, times, band.yhat, band.lower, band.upper)
    found, back = _next_move(times, values, yhat, lower, upper, last, after)
    if found is None:
        return band
    first, at = found
    shift = level_shift(values[first:at + 1], yhat[first:at + 1])
    meta = dict(band.meta)
    arrays = [np.array(a, dtype=np.float64) for a in (band.yhat, band.lower, band.upper)]
    if back:  # yhat goes back to the level the series returned to; the band still covers both
        meta["follow"] = {**record, "at": int(times[at]), "back": True}
        if shift is not None:
            move_back(arrays, grid > times[at], shift)
        return SeriesBand(dict(band.labels), band.start, band.step, *arrays, meta)
    shift = absorbed(shift, absorb)
    meta["follow"] = {"at": int(times[at]), "shift": shift, "count": int(record.get("count", 0)) + (shift is not None)}
    if shift is not None:
        widen(arrays, grid > times[at], shift)
        training = dict(meta.get("training") or {})
        limits = training.get("sustained")
        if isinstance(limits, dict):  # each limit also covers itself moved, as the edges do
            low, high = finite_number(limits.get("lower")), finite_number(limits.get("upper"))
            training["sustained"] = {**limits,
                                     "lower": None if low is None else min(low, shift_limit(low, shift)),
                                     "upper": None if high is None else max(high, shift_limit(high, shift))}
            meta["training"] = training
    return SeriesBand(dict(band.labels), band.start, band.step, *arrays, meta)

