"""Regimes: the levels a series switches between again and again, and bands that cover them.

A GPU idles and runs batch jobs near full load; an autoscaler steps between replica counts; an
error ratio is zero except for blips. Each such level is normal because the history shows it
repeatedly, whatever its size, so the band must reach it, while a level no regime has (or a value
beyond the furthest recurring one) still alerts. Pure functions of the values; no clock, no I/O.

Finding them: the values' histogram, in bins as wide as the point-to-point noise (the robust spread
of first differences: within a regime the series barely moves, and switches are rare), falls into
occupied stretches separated by empty ones. A stretch holding enough of the points is a level; it
is a *regime* when the series entered it in at least `MIN_EPISODES` separate episodes (a level
visited once is a shift or an incident, not a recurring regime) and the stretches are further
apart than `MIN_GAP` noise sds. Time of day plays no part: batch jobs at random times recur in
value, not in phase.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smartmetrics.engine.bands import tail_quantile
from smartmetrics.engine.robust import robust_sd, run_maxima
from smartmetrics.engine.training import one_off_episodes, recurring

MIN_EPISODES = 3       # separate visits that make a level a regime, not a one-off
MIN_SHARE = 0.002      # a level holds at least this share of the points...
MIN_POINTS = 6         # ...and at least this many
MIN_GAP = 6.0          # regimes lie at least this many noise sds apart
MAX_BINS = 4000
MERGE_POINTS = 2       # an episode interrupted for at most this many points goes on


@dataclass(frozen=True)
class Regime:
    """One recurring level: its median and range, share of the points, visits and longest visit."""

    centre: float
    low: float
    high: float
    share: float
    episodes: int
    longest: int  # seconds
    width: float = 0.0  # the resolution it was found at: a histogram bin (noise sd or quantum)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, rounded to 12 significant digits (the band is built from these: a fixed number
        of decimals would round the levels of a series in the millionths to 0).

        >>> Regime(1.2345678901234e-9, 0.0, 2e-9, 0.5, 3, 60).to_dict()["centre"]
        1.23456789012e-09
        """
        return {k: (float(f"{v:.12g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}


def point_noise(values: np.ndarray) -> float:
    """Robust sd of one point's change, per point: the noise within a regime (0 for exact levels)."""
    x = values[np.isfinite(values)]
    if len(x) < 3:
        return 0.0
    return float(robust_sd(np.diff(x))) / math.sqrt(2)


def find_levels(values: np.ndarray, step: int) -> list[Regime]:
    """Every level the finite `values` dwell at (recurring or not), lowest first; [] for one level.

    >>> v = np.tile(np.r_[np.zeros(20), np.full(5, 9.0)], 6)
    >>> [(r.centre, r.episodes) for r in find_levels(v, 60)]
    [(0.0, 6), (9.0, 6)]
    """
    return _levels(values, step)[0]


def current_level(values: np.ndarray, step: int, lasting: int) -> Regime | None:
    """The level the series is at now if it has stayed there (passing stays bridged) for at least
    `lasting` seconds, else None: however few its visits, it is where the series lives now.

    >>> v = np.r_[np.tile(np.r_[np.zeros(20), np.full(5, 9.0)], 6), np.full(40, 4.0)]
    >>> current_level(v, 60, 1800).centre, current_level(v, 60, 3600)
    (4.0, None)
    """
    levels, (last, length) = _levels(values, step)
    return levels[last] if levels and length * int(step) >= lasting else None


def _levels(values: np.ndarray, step: int) -> tuple[list[Regime], tuple[int, int]]:
    """`find_levels`, and (index of the level of the latest visit, that visit's length in points)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    x = values[finite]
    n = len(x)
    if n < 4 * MIN_POINTS:
        return [], (0, 0)
    found, width = _stretches(x, point_noise(values))
    stretches = [(lo, hi) for lo, hi in found if np.sum((x >= lo) & (x <= hi)) >= max(MIN_POINTS, MIN_SHARE * n)]
    if len(stretches) < 2:
        return [], (0, 0)
    which = np.full(len(values), -1)
    for k, (lo, hi) in enumerate(stretches):
        which[finite & (values >= lo) & (values <= hi)] = k
    visits, last = _visits(which, len(stretches))
    levels = []
    for k, (lo, hi) in enumerate(stretches):
        inside = which == k
        count, longest = visits[k]
        levels.append(Regime(float(np.median(values[inside])), float(lo), float(hi), float(inside.sum()) / n,
                             count, longest * int(step), float(width)))
    return levels, last


def _visits(which: np.ndarray, levels: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Per level, (visits, longest visit in points) of a per-point level index (-1: a gap, a switch
    in passing or an outlier, which continues the level before it), and (level, length) of the latest
    visit. A stay of at most `MERGE_POINTS` points elsewhere does not end a visit: a dip is not a
    departure."""
    idx = np.flatnonzero(which >= 0)
    if len(idx) == 0:
        return [(0, 0)] * levels, (0, 0)
    filled = which[idx]  # the points between belong to no level: they leave the visit as it is
    change = np.flatnonzero(np.diff(filled)) + 1
    starts, stops = np.r_[0, change], np.r_[change, len(filled)]
    runs = [(int(filled[a]), int(b - a)) for a, b in zip(starts, stops)]
    merged: list[list[int]] = []
    for level, length in runs:
        if merged and (level == merged[-1][0] or length <= MERGE_POINTS):
            merged[-1][1] += length  # the same level again, or a passing stay: one visit goes on
        else:
            merged.append([level, length])
    out = [(0, 0)] * levels
    for level, length in merged:
        count, longest = out[level]
        out[level] = (count + 1, max(longest, length))
    return out, (merged[-1][0], merged[-1][1])


def find_regimes(values: np.ndarray, step: int) -> list[Regime]:
    """The recurring levels (`MIN_EPISODES` visits or more), lowest first; [] unless there are two."""
    regimes = [r for r in find_levels(values, step) if r.episodes >= MIN_EPISODES]
    return regimes if len(regimes) >= 2 else []


def _stretches(x: np.ndarray, noise: float) -> tuple[list[tuple[float, float]], float]:
    """(low, high) of the occupied stretches of the histogram, gaps of at least `MIN_GAP` noise sds,
    and the histogram's bin width."""
    span = float(x.max() - x.min())
    if span <= 0:
        return [], 0.0
    distinct = np.unique(x)
    quantum = float(np.min(np.diff(distinct))) if len(distinct) > 1 else span
    width = max(noise, quantum, span / MAX_BINS)
    bins = math.ceil(span / width) + 1  # bins centred on the lowest value on: exact levels apart
    edges = float(x.min()) - width / 2 + width * np.arange(bins + 1)
    counts, _ = np.histogram(x, bins=edges)
    busy = np.flatnonzero(counts >= max(3, 0.0005 * len(x)))
    if len(busy) == 0:
        return [], width
    # exact levels (no noise within them): every occupied bin is a level of its own
    gap_bins = max(1, math.ceil(MIN_GAP * noise / width)) if noise > 0 else 0
    split = np.flatnonzero(np.diff(busy) - 1 >= gap_bins) + 1
    return [(float(edges[run[0]]), float(edges[run[-1] + 1])) for run in np.split(busy, split)], width


def describe(regimes: list[Regime]) -> str:
    """One line for people: each regime's level, share and visits.

    >>> describe([Regime(0.05, 0.0, 0.1, 0.97, 14, 3600), Regime(0.93, 0.9, 0.97, 0.03, 15, 3300)])
    'regimes 0.05 (97%, 14 visits, longest 1h), 0.93 (3%, 15 visits, longest 55m)'
    """
    from smartmetrics.engine.durations import format_duration

    parts = [f"{r.centre:.4g} ({r.share:.0%}, {r.episodes} visits, longest {format_duration(r.longest)})"
             for r in regimes]
    return "regimes " + ", ".join(parts)


def regime_band(lower: np.ndarray, upper: np.ndarray, values: np.ndarray, timestamps: np.ndarray,
                regimes: list[Regime], coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """A regime curve's band: from the lowest regime down to its tail to the highest up to its tail,
    in place of the models' band, which a mixture of levels only blurs. A tail is the quantile of that
    regime's values, with the excursions beyond it that recur (`training.recurring`: spikes every few
    hours on top of the level) but not the one-offs (an incident stays an incident), at the
    sensitivity's misses per side spread over those values alone, extrapolated where the data are
    short, and half a step of the resolution the regimes were found at beyond (a replica count one
    above the highest sits on the edge, two above it outside). A switch between regimes alerts at no
    hour, a level beyond every regime and its usual excursions at any."""
    if not regimes or not np.isfinite(values).any():
        return lower, upper
    miss = (1 - coverage) / 2 * int(np.isfinite(values).sum())
    high = _tail(values, timestamps, regimes[-1], miss)
    bottom = regimes[0]
    low = -_tail(-values, timestamps, Regime(-bottom.centre, -bottom.high, -bottom.low, 0, 0, 0, bottom.width), miss)
    return np.full_like(lower, low), np.full_like(upper, high)


def _tail(values: np.ndarray, timestamps: np.ndarray, regime: Regime, miss: float) -> float:
    """How far above `regime` its values and their recurring excursions reach (see `regime_band`)."""
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(values) & (values > regime.high)
        inside = np.isfinite(values) & (values >= regime.low) & (values <= regime.high)
    usual = recurring(beyond, np.where(beyond, 1.0, 0.0), timestamps)
    x = values[inside | usual]
    reach = tail_quantile(x, min(0.5, miss / len(x))) if len(x) else regime.high
    return max(reach, regime.high) + 0.5 * regime.width  # half a step of the resolution beyond: the regime


def blip_band(upper: np.ndarray, values: np.ndarray, coverage: float, floor: float = 0.0,
              timestamps: np.ndarray | None = None, step: int = 0) -> np.ndarray:
    """A sparse series' upper edge reaches the sizes its blips usually take: the quantile of its
    episodes' peaks (a run of points above the floor is one episode) at the miss rate the point band
    allows them (the sensitivity's misses spread over the episodes alone). Episodes, not points: an
    afternoon-long incident is one episode, and its hundred points must not make its height look
    usual. Given the `timestamps` and `step`, an episode far longer than the usual ones that does not
    recur (`training.one_off_episodes`) is left out altogether: at the top of a few dozen blips, one
    incident's peak would set the tail they are extrapolated by.

    >>> v = np.zeros(1000); v[::50] = np.linspace(1, 2, 20)
    >>> 2.0 < float(blip_band(np.full(3, 0.5), v, 0.9995)[0]) < 2.5
    True
    >>> v[500:530] = 9.0  # one long incident among twenty blips stays outside
    >>> float(blip_band(np.full(3, 0.5), v, 0.9995)[0]) < 9.0
    True
    """
    above = np.isfinite(values) & (values > floor)
    if timestamps is not None and step > 0 and above.any():
        above &= ~one_off_episodes(above, timestamps, step)
    if not above.any():
        return upper
    peaks = np.sort(run_maxima(values, above))
    if len(peaks) < 2:
        return upper
    miss = min(0.5, (1 - coverage) * int(np.isfinite(values).sum()) / len(peaks))
    return np.maximum(upper, floor + tail_quantile(peaks - floor, miss))
