"""Releases: re-anchor a band after a deploy instead of alerting on the new level until the next retrain.

A release (a deploy, a config rollout, an operator scaling a deployment) may move a series to a new
normal level, and a band fitted before it only learns that level at the next retrain. Given when the
releases happened (a PromQL marker expression in the daemon, a file in `backtest --releases`), each
affected series' band is withdrawn for `settle` seconds after the release, so none of its alerts can
fire while the rollout settles, and then comes back moved by the median difference between what the
series did at the end of the settle window and what the band expected.

This takes the level a release leaves behind as the new normal, which is right for traffic moved
between versions and wrong for a release that breaks something for good. `absorb` says which moves
are accepted: `down` for error rates and latencies (an improvement becomes the baseline, a regression
still alerts once the settle time is over), `up`, or `both` (the default, for traffic and load). A
move in a direction not absorbed leaves the band where it was.

Releases closer together than `settle` form one burst: the band is withdrawn from the first to
`settle` after the last, and the shift is measured over the later half of the last release's settle
window: the level the rollout left, not the transition while pods were replaced, nor a temporary
change (an operator scaling up for ten minutes) that was undone before the window ended. The shift
is additive: it moves `yhat`, both edges and the trailing-mean limits alike (the band keeps its
width), and nothing that was at or above zero is pushed below zero. Fewer than `MIN_POINTS`
observed points in the window measure nothing, and the band comes back unmoved.

Everything here is a pure function of arrays, shared by the daemon (on a stored forecast table) and
the walk-forward backtest (on the replayed band), so both treat a release the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from smartmetrics.engine.ranges import finite_number
from smartmetrics.engine.series import on_grid
from smartmetrics.engine.state import SeriesBand

SETTLE = 1800.0
"""Default settle time: long enough for a rolling update to finish and give a few points at 5m."""
MIN_POINTS = 3
"""Observed points needed in the settle window to measure the shift."""
ABSORB = ("both", "up", "down")


@dataclass(frozen=True)
class Burst:
    """Releases closer together than the settle time: the band is withdrawn over `[first, until)`
    and re-anchored on the points of `[last, until)`."""

    first: int
    last: int
    until: int

    def held(self, timestamps: np.ndarray) -> np.ndarray:
        """Where the band is withdrawn."""
        return (timestamps >= self.first) & (timestamps < self.until)

    def measured(self, timestamps: np.ndarray) -> np.ndarray:
        """The window the shift is measured on (its later half, by `level_shift`)."""
        return (timestamps >= self.last) & (timestamps < self.until)


def bursts(releases: Iterable[float], settle: float = SETTLE) -> list[Burst]:
    """Release times grouped into bursts, in time order.

    >>> bursts([7200, 0, 600], settle=1800)
    [Burst(first=0, last=600, until=2400), Burst(first=7200, last=7200, until=9000)]
    """
    out: list[Burst] = []
    for t in sorted(int(r) for r in releases):
        if out and t < out[-1].until:
            out[-1] = Burst(out[-1].first, t, int(t + settle))
        else:
            out.append(Burst(t, t, int(t + settle)))
    return out


def level_shift(values: np.ndarray, yhat: np.ndarray, min_points: int = MIN_POINTS) -> float | None:
    """Median of `values - yhat` over the later half (at least `min_points`) of the points where both are
    known, in time order; None with fewer than `min_points`.

    >>> level_shift(np.array([5.0, 6.0, np.nan, 7.0]), np.array([1.0, 1.0, 1.0, 1.0]))
    5.0
    >>> level_shift(np.array([9.0, 9.0, 9.0, 0.0, 0.0, 0.0, 0.0]), np.zeros(7))  # reverted: no shift
    0.0
    >>> level_shift(np.array([5.0, np.nan]), np.array([1.0, 1.0])) is None
    True
    """
    diff = np.asarray(values, dtype=np.float64) - np.asarray(yhat, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    need = max(int(min_points), 1)
    if len(diff) < need:
        return None
    return float(np.median(diff[-max(need, (len(diff) + 1) // 2):]))


def moved(arr: np.ndarray, shift: float) -> np.ndarray:
    """`arr + shift`, except that what was not negative is not pushed below zero (NaN stays NaN).

    >>> moved(np.array([2.0, 1.0, -1.0, np.nan]), -1.5).tolist()
    [0.5, 0.0, -2.5, nan]
    """
    arr = np.asarray(arr, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(arr >= 0, np.maximum(arr + shift, 0.0), arr + shift)


def shift_limit(limit: float | None, shift: float) -> float | None:
    """A stored trailing-mean limit moved with the band (absent stays absent)."""
    return None if limit is None else float(moved(np.array([limit]), shift)[0])


def absorbed(shift: float | None, absorb: str) -> float | None:
    """The shift to apply: `shift` if its direction is accepted, else None (the band stays where it was).

    >>> absorbed(2.0, "down"), absorbed(-2.0, "down"), absorbed(2.0, "both")
    (None, -2.0, 2.0)
    """
    if absorb not in ABSORB:
        raise ValueError(f"absorb must be one of {', '.join(ABSORB)}, not {absorb!r}")
    if shift is None or (absorb == "up" and shift < 0) or (absorb == "down" and shift > 0):
        return None
    return shift


def measure_shift(
    burst: Burst, timestamps: np.ndarray, values: np.ndarray, band_times: np.ndarray, yhat: np.ndarray,
    absorb: str = "both", min_points: int = MIN_POINTS,
) -> float | None:
    """The accepted shift of a burst: observed `values` at `timestamps` against `yhat` (on the grid
    `band_times`, linearly interpolated) over the burst's settle window; None to leave the band as is."""
    window = burst.measured(timestamps)
    (expected,) = on_grid(band_times, timestamps[window], yhat)
    return absorbed(level_shift(values[window], expected, min_points), absorb)


def replay_releases(
    timestamps: np.ndarray, values: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    limits: tuple[np.ndarray, ...], releases: Iterable[float], periods: Iterable[tuple[int, int]], *,
    settle: float = SETTLE, absorb: str = "both",
) -> tuple[np.ndarray, ...]:
    """A walk-forward band with releases applied: `(yhat, lower, upper, *limits)`, new arrays.

    `periods` are the `[start, stop)` spans each fitted model predicted. A burst still settling in a
    period applies to that model up to the period's end (a burst that settled before the period is in
    the model's training data, which `training.relevel` re-levelled): the edges and limits are
    withdrawn (NaN) over the burst, then moved by the burst's accepted shift. `yhat` stays during the
    burst, as the daemon keeps it to measure the shift on.
    """
    out = [np.array(a, dtype=np.float64, copy=True) for a in (yhat, lower, upper, *limits)]
    found = bursts(releases, settle)
    for start, stop in periods:
        span = (timestamps >= start) & (timestamps < stop)
        for burst in (b for b in found if b.until > start and b.first < stop):
            held = burst.held(timestamps) & span
            shift = measure_shift(burst, timestamps[span], values[span], timestamps[span], yhat[span], absorb)
            for arr in out[1:]:
                arr[held] = np.nan
            if shift is None:
                continue
            after = span & (timestamps >= burst.until)
            for arr in out:
                arr[after] = moved(arr[after], shift)
    return tuple(out)


# --- the daemon's side: releases applied to a stored forecast table ------------------------------


def release_onsets(timestamps: np.ndarray, values: np.ndarray) -> list[int]:
    """Where a marker series turns on: a finite non-zero value after a zero, a gap or the start.

    `changes(kube_deployment_status_observed_generation[5m]) > 0` is on for a step or two after each
    rollout; each run of "on" points is one release, at its first point.

    >>> release_onsets(np.arange(6) * 60, np.array([np.nan, 1.0, 2.0, 0.0, 1.0, np.nan]))
    [60, 240]
    """
    on = np.isfinite(values) & (np.nan_to_num(values) != 0)
    starts = on & ~np.concatenate(([False], on[:-1]))
    return [int(t) for t in timestamps[starts]]


def releases_for(labels: Mapping[str, str], markers: Iterable[tuple[Mapping[str, str], int]],
                 match: Iterable[str]) -> list[int]:
    """The release times among `markers` (marker labels, time) that concern a series with `labels`:
    those whose `match` labels equal the series' (every marker when `match` is empty).

    >>> releases_for({"app": "a", "pod": "p1"}, [({"app": "a"}, 10), ({"app": "b"}, 20)], ["app"])
    [10]
    """
    names = tuple(match)
    return sorted(t for marker, t in markers if all(marker.get(n, "") == labels.get(n, "") for n in names))


def _record(band: SeriesBand) -> dict | None:
    record = band.meta.get("release")
    return record if isinstance(record, dict) else None


def _pending(band: SeriesBand, releases: Iterable[int], now: float, settle: float) -> list[int]:
    """Releases up to `now` that the band's fit left to settle (those settled by the end of its training
    data were re-levelled there, see `training.release_shifts`) and after those already recorded."""
    record = _record(band)
    after = max(band.meta.get("data_end", band.start) - settle, record["last"] if record else -np.inf)
    return sorted(t for t in set(releases) if after < t <= now)


def needs_data_since(band: SeriesBand, releases: Iterable[int], now: float, settle: float = SETTLE) -> int | None:
    """From when `apply_to_band` needs the series' values (None: it has nothing to do).

    >>> band = SeriesBand({}, 0, 60, np.zeros(3), np.zeros(3), np.zeros(3), {"data_end": 100})
    >>> needs_data_since(band, [50, 400], now=500, settle=30), needs_data_since(band, [50], now=500, settle=30)
    (400, None)
    """
    record, pending = _record(band), _pending(band, releases, now, settle)
    starts = pending[:1]
    if record is not None and not record.get("settled", True):
        starts.append(int(record["last"]))
    return min(starts) if starts else None


def apply_to_band(
    band: SeriesBand, releases: Iterable[int], now: float, observed: tuple[np.ndarray, np.ndarray] | None, *,
    settle: float = SETTLE, absorb: str = "both", min_points: int = MIN_POINTS,
) -> SeriesBand:
    """A stored band with the releases since its fit applied as far as `now` allows (the same object when
    nothing changed).

    Releases that had settled by the fit's `data_end` were re-levelled in its training data and are
    ignored, as are those already recorded in `meta["release"]`. A burst still settling at `now` is
    withdrawn (edges NaN from its first release to its end); one whose settle time is over is measured
    on `observed` (timestamps, values of the series; None when not fetched, which keeps it withdrawn
    until it is) and the band from its end onwards moved by the accepted shift, trailing-mean limits
    included.
    """
    meta, record, pending = dict(band.meta), _record(band), _pending(band, releases, now, settle)
    active = Burst(record["first"], record["last"], record["until"]) if record and not record["settled"] else None
    if not pending and (active is None or now < active.until or observed is None):
        return band
    grid = band.start + np.arange(len(band.yhat), dtype=np.int64) * band.step
    yhat, lower, upper = (np.array(a, dtype=np.float64) for a in (band.yhat, band.lower, band.upper))
    training = dict(meta.get("training") or {})
    for t in pending:
        if active is not None and t < active.until:
            active = Burst(active.first, t, int(t + settle))
            continue
        if active is not None:  # an earlier burst ended before this release: settle it first
            if observed is None:
                return band  # no data to measure it with yet; try again on the next pass
            _settle(active, grid, yhat, lower, upper, training, observed, absorb, min_points)
        active = Burst(t, t, int(t + settle))
    held = active.held(grid)
    lower[held], upper[held] = np.nan, np.nan
    done = now >= active.until and observed is not None
    shift = _settle(active, grid, yhat, lower, upper, training, observed, absorb, min_points) if done else None
    meta["release"] = {"first": active.first, "last": active.last, "until": active.until,
                       "settled": bool(done), "shift": shift}
    if training:
        meta["training"] = training
    return SeriesBand(dict(band.labels), band.start, band.step, yhat, lower, upper, meta)


def _settle(burst: Burst, grid: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            training: dict, observed: tuple[np.ndarray, np.ndarray], absorb: str, min_points: int) -> float | None:
    """Measure a finished burst on `observed` and move the arrays (and `training["sustained"]`) in place
    from its end; the shift applied (None: nothing moved)."""
    times, values = observed
    shift = measure_shift(burst, times, values, grid, yhat, absorb, min_points)
    if shift is not None:
        after = grid >= burst.until
        for arr in (yhat, lower, upper):
            arr[after] = moved(arr[after], shift)
        limits = training.get("sustained")
        if isinstance(limits, dict):
            training["sustained"] = {**limits, **{k: shift_limit(finite_number(limits.get(k)), shift)
                                                  for k in ("lower", "upper")}}
    return shift
