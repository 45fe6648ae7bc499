"""Calibrated bands: sensitivity to coverage, conformal calibration, minimum widths and the anomaly score.

Sensitivity maps to a band policy (measured on the synthetic corpus, not on NAB):

| sensitivity | coverage | min half-width, relative to abs(yhat) | min half-width, x training IQR | `for` (points) | `keep_firing_for` | score threshold |
|-------------|----------|------|------|---|-----|-----|
| low         | 0.9999   | 0.10 | 0.10 | 2 | 3h  | 1.5 |
| medium      | 0.9995   | 0.05 | 0.05 | 1 | 2h  | 1.3 |
| high        | 0.998    | 0.02 | 0.02 | 1 | 1h  | 1.1 |
| s in (0,1)  | 1 - 10**(2.6 s - 4.65) (0.5 -> 0.99955) | 0.05 at 0.5, scaled by the miss rate | same | 2 if s < 0.4, else 1 | as the word below, between or above 0.4 and 0.65 | same |

The band is calibrated to its nominal coverage (what the dashboard draws); the alert fires while
`anomaly_score > threshold` for `for`, then keeps firing for `keep_firing_for` (Prometheus 2.42+)
after the score falls back. The threshold above 1 is the false-alert budget: at medium the band
edge alone, with `for` 1, raised about 0.12 false alerts per clean series-day on the synthetic
corpus, 1.3 brings it near 0.05. `keep_firing_for` makes a value that hovers around the edge during
one incident raise one alert, not one per crossing (alert onsets fell by half on the corpus).

Why so wide: at a 5-minute step a series has 288 points a day, so a budget of 0.05 false alerts
per series-day leaves a per-point miss rate near 2e-4; and one-point spikes are only caught with a
`for` of one point. Measured on the synthetic corpus, a 99.5% band with `for` 2 missed most short
spikes and still raised about 0.35 false alerts per series-day.

The minimum absolute width is expressed in the series' own units through its training spread (the
interquartile range), because a fixed number cannot suit both bytes/s and error ratios.

Calibration is split-conformal on out-of-sample (walk-forward) residuals normalised by the models'
own scale: `z = (y - yhat) / scale`. Each side gets its own quantile, so skewed residuals give an
asymmetric band, but neither side is narrower than half the other: a few days of backtest residuals
are no proof of skew, however many points they hold (on the real corpora a dip's aftermath, a few
days below a level model, left upper edges at a fifth of the lower ones, and the next ordinary
day's peak outside the band: mscmd coverage 0.988 with the skew taken from 500 residuals on, 0.995
without); tails beyond the data
are extrapolated with a generalised Pareto tail fitted to the top exceedances (shape clipped to
[0, 0.5]: exponential for Laplace or Gaussian noise, heavier for lognormal-like residuals). Where the
curve is seasonal, a per time-of-day bucket factor (shrunk towards 1) widens the hours that were
harder to predict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smartmetrics.engine.models.base import group_median
from smartmetrics.engine.robust import rolling_extremes, rolling_median

if TYPE_CHECKING:
    from smartmetrics.engine.series import Series

SENSITIVITY_WORDS = {"low": 0.25, "medium": 0.5, "high": 0.75}
_WORD_POLICY = {
    "low": (0.9999, 0.10, 0.10, 2, 3 * 3600, 1.5),
    "medium": (0.9995, 0.05, 0.05, 1, 2 * 3600, 1.3),
    "high": (0.998, 0.02, 0.02, 1, 3600, 1.1),
}
TAIL_EXCEEDANCES = 10
MIN_SIDE_RATIO = 0.5  # neither side of a band is narrower than half the other
REVERSAL_DAYS = 2
WEEKEND_DIP = 0.5
WEEKEND_EDGE = 6 * 3600  # an unseen weekend may begin or end this long either side of UTC midnight
RECUR_SLACK = 1800  # seconds either side of the same time of day
RECUR_SHARE = 0.5
RECUR_CONTRAST = 3.0
WEEK_SECONDS = 7 * 86400


@dataclass(frozen=True)
class BandPolicy:
    """What a sensitivity means: nominal coverage, minimum half-widths, the alert `for` in points, its
    `keep_firing_for` in seconds and the anomaly-score threshold it fires above."""

    coverage: float
    min_rel: float
    min_spread: float
    for_points: int
    keep_firing_for: int = 0
    threshold: float = 1.0

    def keep_points(self, step: int) -> int:
        """`keep_firing_for` in points of `step` seconds (rounded up).

        >>> band_policy("medium").keep_points(300), band_policy("medium").keep_points(3600)
        (24, 2)
        """
        return -(-self.keep_firing_for // max(int(step), 1))


def band_policy(sensitivity: str | float) -> BandPolicy:
    """The band policy of a sensitivity word or number in (0, 1) (higher means more alerts).

    >>> band_policy("medium").coverage, band_policy(0.5).for_points
    (0.9995, 1)
    """
    if isinstance(sensitivity, str):
        if sensitivity not in _WORD_POLICY:
            raise ValueError(f"sensitivity must be low|medium|high or a number in (0,1), got {sensitivity!r}")
        return BandPolicy(*_WORD_POLICY[sensitivity])
    s = float(sensitivity)
    if not 0 < s < 1:
        raise ValueError(f"sensitivity must be in (0, 1), got {s}")
    miss = 10 ** (2.6 * s - 4.65)
    width = 0.05 * math.sqrt(0.00045 / miss)
    word = "low" if s < 0.4 else "medium" if s < 0.65 else "high"
    _, _, _, for_points, keep, threshold = _WORD_POLICY[word]
    return BandPolicy(coverage=round(1 - miss, 6), min_rel=width, min_spread=width, for_points=for_points,
                      keep_firing_for=keep, threshold=threshold)


def tail_quantile(x: np.ndarray, p: float) -> float:
    """The (1 - p) upper quantile of `x`, conformal (finite-sample) when the data reach it, else an
    exponential-tail extrapolation from the top exceedances.

    >>> round(tail_quantile(np.arange(1000.0), 0.1), 1)
    900.0
    """
    x = np.sort(x[np.isfinite(x)])
    n = len(x)
    if n == 0:
        return 0.0
    p_u = max(0.05, TAIL_EXCEEDANCES / n)
    if p >= p_u or n < TAIL_EXCEEDANCES:
        rank = min(n, math.ceil((n + 1) * (1 - p)))
        return float(x[max(rank, 1) - 1])
    u = float(x[min(n - 1, math.ceil((n + 1) * (1 - p_u)) - 1)])
    return u + gpd_excess_quantile(x[x > u] - u, p_u / p)


def gpd_excess_quantile(excess: np.ndarray, ratio: float) -> float:
    """How far past the threshold the `1/ratio` tail quantile of a generalised Pareto fit lies.

    Method of moments for the shape, clipped to [0, 0.5]: never lighter than exponential (so
    Gaussian residuals get a slightly conservative band) but heavy tails (lognormal latencies) are
    followed.

    >>> round(gpd_excess_quantile(np.array([1.0, 1.0, 1.0]), math.e), 6)
    1.0
    """
    if len(excess) == 0:
        return 0.0
    m, v = float(np.mean(excess)), float(np.var(excess))
    shape = float(np.clip(0.5 * (1 - m * m / v), 0.0, 0.5)) if v > 0 else 0.0
    if shape < 1e-6:
        return m * math.log(ratio)
    sigma = m * (1 - shape)
    return sigma / shape * (ratio**shape - 1)


@dataclass(frozen=True)
class Calibration:
    """Normalised band offsets per side, per time-of-day bucket factors, and the achieved coverage."""

    q_lo: float
    q_hi: float
    bucket_factors: tuple[float, ...]
    bucket_period: int
    coverage: float
    achieved: float
    n: int

    def factors_at(self, timestamps: np.ndarray) -> np.ndarray:
        """The bucket widening factor for each timestamp (all 1 when not seasonal)."""
        k = len(self.bucket_factors)
        if k <= 1:
            return np.ones(len(timestamps))
        idx = (np.mod(timestamps, self.bucket_period) * k // self.bucket_period).astype(np.int64)
        return np.asarray(self.bucket_factors)[idx]


def bucket_factors(z: np.ndarray, timestamps: np.ndarray, period: int, buckets: int,
                   shrink: float = 50.0) -> tuple[float, ...]:
    """Per-bucket ratio of the 80% |z| quantile to the overall one, shrunk towards 1 by sample size."""
    if buckets <= 1 or len(z) < 4 * buckets:
        return (1.0,)
    absz = np.abs(z)
    overall = float(np.quantile(absz, 0.8)) or 1.0
    idx = (np.mod(timestamps, period) * buckets // period).astype(np.int64)
    out = []
    for b in range(buckets):
        zb = absz[idx == b]
        ratio = float(np.quantile(zb, 0.8)) / overall if len(zb) else 1.0
        out.append(max(0.7, (len(zb) * ratio + shrink) / (len(zb) + shrink)))
    return tuple(out)


def calibrate(z: np.ndarray, timestamps: np.ndarray, coverage: float, period: int = 0,
              buckets: int = 1) -> Calibration:
    """Conformal offsets of normalised residuals `z` for a two-sided `coverage`, optionally per bucket."""
    ok = np.isfinite(z)
    z, timestamps = z[ok], timestamps[ok]
    factors = bucket_factors(z, timestamps, period, buckets) if period else (1.0,)
    cal = Calibration(0.0, 0.0, factors, period or 1, coverage, 1.0, len(z))
    zn = z / cal.factors_at(timestamps)
    miss = (1 - coverage) / 2
    q_hi = max(tail_quantile(zn, miss), 0.0)
    q_lo = min(-tail_quantile(-zn, miss), 0.0)
    q_hi, q_lo = max(q_hi, -MIN_SIDE_RATIO * q_lo), min(q_lo, -MIN_SIDE_RATIO * q_hi)
    achieved = float(np.mean((zn >= q_lo) & (zn <= q_hi))) if len(zn) else 1.0
    return Calibration(q_lo, q_hi, factors, period or 1, coverage, achieved, len(z))


def held_out_coverage(z: np.ndarray, timestamps: np.ndarray, coverage: float, last: int, period: int = 0,
                      buckets: int = 1) -> tuple[float | None, int]:
    """(share of the last `last` normalised residuals inside a band calibrated only on the ones before
    them, how many were checked): an honest estimate of the coverage a series' band keeps, where the
    in-sample `Calibration.achieved` is near nominal by construction. (None, 0) without enough of either.

    >>> z = np.random.default_rng(0).normal(size=2000)
    >>> cov, n = held_out_coverage(z, np.arange(2000) * 300, 0.99, 500)
    >>> n, 0.97 < cov <= 1.0
    (500, True)
    """
    late = slice(len(z) - last, len(z))
    ok_early = np.isfinite(z[:late.start])
    ok_late = np.isfinite(z[late])
    if last <= 0 or ok_early.sum() < 2 * TAIL_EXCEEDANCES or not ok_late.any():
        return None, 0
    cal = calibrate(z[:late.start], timestamps[:late.start], coverage, period=period, buckets=buckets)
    zn = z[late][ok_late] / cal.factors_at(timestamps[late][ok_late])
    return float(np.mean((zn >= cal.q_lo) & (zn <= cal.q_hi))), int(ok_late.sum())


def apply_band(yhat: np.ndarray, scale: np.ndarray, lo_off: np.ndarray, hi_off: np.ndarray,
               min_half: np.ndarray, floor: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band edges from normalised offsets, each side at least `min_half` wide, clipped at `floor`.

    >>> y, lo, hi = apply_band(np.array([1.0]), np.array([1.0]), np.array([-3.0]), np.array([2.0]),
    ...                        np.array([0.5]), 0.0)
    >>> lo.tolist(), hi.tolist()
    ([0.0], [3.0])
    """
    lower = yhat + np.minimum(lo_off * scale, -min_half)
    upper = yhat + np.maximum(hi_off * scale, min_half)
    if floor is not None:
        yhat = np.maximum(yhat, floor)
        lower = np.maximum(lower, floor)
        upper = np.maximum(upper, yhat)
    return yhat, lower, upper


def anomaly_score(value: np.ndarray | float, yhat: np.ndarray | float, lower: np.ndarray | float,
                  upper: np.ndarray | float) -> np.ndarray:
    """0 at yhat, 1 at the band edge, above 1 outside; each side scaled by its own half-band.

    A zero-width side scores 0 for a value exactly on it and infinity beyond. NaN in, NaN out.

    >>> anomaly_score(np.array([10.0, 12.0, 14.0, 9.0, 7.0]), 10.0, 9.0, 12.0).tolist()
    [0.0, 1.0, 2.0, 1.0, 3.0]
    """
    value, yhat, lower, upper = (np.asarray(a, dtype=np.float64) for a in (value, yhat, lower, upper))
    above = value >= yhat
    dev = np.abs(value - yhat)
    half = np.where(above, upper - yhat, yhat - lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(half > 0, dev / np.where(half > 0, half, 1.0), np.where(dev > 0, np.inf, 0.0))
    return np.where(np.isnan(value) | np.isnan(yhat), np.nan, score)


def allow_reversal(lower: np.ndarray, upper: np.ndarray, yhat: np.ndarray, shift: dict | None,
                   end: int) -> tuple[np.ndarray, np.ndarray]:
    """Within `REVERSAL_DAYS` of a level shift (and `WEEKEND_EDGE` more, as a weekend may begin on
    Friday evening), widen the band to also cover itself moved back to the level it left: the first
    weekend looks like a shift, a rolled-back deploy is no incident, and a shift seen for a few hours
    may be an incident that ends.

    >>> allow_reversal(np.array([9.0]), np.array([11.0]), np.array([10.0]), {"at": 0, "size": 5.0}, 3600)
    (array([4.]), array([11.]))
    """
    if not shift or end - shift["at"] > REVERSAL_DAYS * 86400 + WEEKEND_EDGE:
        return lower, upper
    return np.minimum(lower, lower - shift["size"]), np.maximum(upper, upper - shift["size"])


def first_week_priors(lower: np.ndarray, upper: np.ndarray, yhat: np.ndarray, ts: np.ndarray,
                      train: Series) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) before the history has shown a whole week (UTC days):

    - on a Saturday or Sunday it has not shown yet, and within `WEEKEND_EDGE` of one, the band reaches
      down to `WEEKEND_DIP` of `yhat`: many services are quieter at weekends, and before the first
      weekend the engine cannot know whether this one is, nor when its users' weekend begins (their
      Friday evening ramp, their time zone's midnight);
    - a history that began on a weekend and holds only Saturdays and Sundays lets the band reach up
      to `yhat / WEEKEND_DIP` on the weekdays: a quiet first weekend says nothing of Monday's load.

    >>> from smartmetrics.engine.series import Series
    >>> s = Series({}, np.arange(0, 2 * 86400, 3600), np.ones(48), 3600)  # a Thursday and a Friday
    >>> [e.tolist() for e in first_week_priors(np.full(2, 9.0), np.full(2, 11.0), np.full(2, 10.0),
    ...                                         np.array([2 * 86400, 3 * 86400]), s)]
    [[5.0, 5.0], [11.0, 11.0]]
    >>> s = Series({}, np.arange(2 * 86400, 4 * 86400, 3600), np.ones(48), 3600)  # a Saturday and a Sunday
    >>> [e.tolist() for e in first_week_priors(np.full(2, 9.0), np.full(2, 11.0), np.full(2, 10.0),
    ...                                         np.array([4 * 86400, 5 * 86400]), s)]
    [[9.0, 9.0], [20.0, 20.0]]
    """
    seen = np.unique(_day_of_week(train.timestamps[np.isfinite(train.values)]))
    days, positive = _day_of_week(ts), yhat > 0
    weekend = np.isin(days, (5, 6))
    unseen = np.zeros(len(ts), dtype=bool)
    for near in (days, _day_of_week(ts + WEEKEND_EDGE), _day_of_week(ts - WEEKEND_EDGE)):
        unseen |= np.isin(near, (5, 6)) & ~np.isin(near, seen)
    lower = np.where(unseen & positive, np.minimum(lower, WEEKEND_DIP * yhat), lower)
    if len(seen) and np.isin(seen, (5, 6)).all():
        upper = np.where(~weekend & positive, np.maximum(upper, yhat / WEEKEND_DIP), upper)
    return lower, upper


def last_week_prior(lower: np.ndarray, upper: np.ndarray, yhat: np.ndarray, ts: np.ndarray,
                    train: Series, slope: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Widen the band to also cover itself re-centred on earlier days like the coming one (an hourly
    median of the cleaned history), until a weekly pattern is known:

    - the same hour one week earlier: the second Saturday looks like the first;
    - the same hour of the latest day of the same kind (weekday or weekend day) when that is not
      yesterday: a Monday after a quiet first weekend looks like Friday, not like Sunday.

    A trending series' earlier days are moved by its trend (`slope`, per second) first: last week's
    lower level is its past, not a level it may return to.

    >>> from smartmetrics.engine.series import Series
    >>> t = np.arange(0, 8 * 86400, 3600)
    >>> s = Series({}, t, np.where(t < 86400, 5.0, 10.0), 3600)  # last week's day one was quieter
    >>> lo, hi = last_week_prior(np.full(2, 9.0), np.full(2, 11.0), np.full(2, 10.0), np.array([7, 8]) * 86400, s)
    >>> lo.tolist(), hi.tolist()
    ([4.0, 9.0], [11.0, 11.0])
    >>> t = np.arange(0, 4 * 86400, 3600)  # Thursday to Sunday: a quiet weekend, then Monday
    >>> s = Series({}, t, np.where(t < 2 * 86400, 10.0, 5.0), 3600)
    >>> last_week_prior(np.full(1, 4.0), np.full(1, 6.0), np.full(1, 5.0), np.array([4 * 86400]), s)[1].tolist()
    [11.0]
    """
    if len(train.timestamps) == 0:
        return lower, upper
    smooth = rolling_median(train.values, max(1, 3600 // train.step))
    for lag in (np.full(len(ts), WEEK_SECONDS), _last_like_day(ts, train) * 86400):
        pos, exact = _position(train, ts - lag)
        ref = np.where((lag > 0) & exact, smooth[pos], np.nan)
        shift = np.nan_to_num(ref + slope * lag - yhat, nan=0.0)
        lower, upper = np.minimum(lower, lower + shift), np.maximum(upper, upper + shift)
    return lower, upper


def recurring_excursions(lower: np.ndarray, upper: np.ndarray, ts: np.ndarray, history: Series,
                         period: int = 86400) -> tuple[np.ndarray, np.ndarray]:
    """Widen the band over excursions that recur at the same time of day: a nightly backup's CPU
    spike, a cron job's drop, each starting within half an hour of its usual time. For each
    timestamp, each earlier day's extreme within `RECUR_SLACK` seconds of the same time of day (raw
    history: cleaning masks such spikes as incidents), moved by how far that day's median lies from
    the last day's (a trend or a level shift is no excursion); where those beyond the band recur
    (`_recurs`), the band reaches the second furthest of them (a one-off among them does not
    count). Spikes at random times recur at no time of day. The
    contrast is taken over the timestamps given: pass a whole day.

    >>> from smartmetrics.engine.series import Series
    >>> t = np.arange(0, 3 * 86400, 600)
    >>> s = Series({}, t, np.where(t % 86400 == 7200, 9.0, 1.0), 600)  # 02:00 every day
    >>> ts = 3 * 86400 + np.arange(1, 145) * 600  # the next day
    >>> lo, hi = recurring_excursions(np.zeros(144), np.full(144, 2.0), ts, s)
    >>> (ts[hi > 2.0] % 86400 / 3600).tolist()  # 01:30 to 02:30
    [1.5, 1.6666666666666667, 1.8333333333333333, 2.0, 2.1666666666666665, 2.3333333333333335, 2.5]
    """
    values, ok = history.values, np.isfinite(history.values)
    days = int((history.end - history.start) // period)
    recent = values[(history.timestamps > history.end - period) & ok]
    if days < 2 or len(recent) == 0:
        return lower, upper
    highs, lows = rolling_extremes(values, max(1, RECUR_SLACK // history.step))
    day = (history.timestamps - history.start) // period
    moved = float(np.median(recent)) - group_median(day[ok], values[ok], int(day[-1]) + 1)[day]
    highs, lows = highs + moved, lows + moved
    earlier = ts[np.newaxis, :] - np.arange(1, days + 1)[:, np.newaxis] * period  # a row per day back
    pos, exact = _position(history, earlier)
    hi, lo = np.where(exact, highs[pos], np.nan), np.where(exact, lows[pos], np.nan)  # both read at one placing
    above, below = hi > upper, lo < lower
    # the second furthest: what at least two days showed, so a one-off at a recurring time (yesterday's
    # incident) does not set how far the band reaches for the next two weeks
    top = np.sort(np.where(above, hi, -np.inf), axis=0)[-2]
    bottom = np.sort(np.where(below, lo, np.inf), axis=0)[1]
    upper = np.where(_recurs(above, np.isfinite(hi)), np.maximum(upper, top), upper)
    lower = np.where(_recurs(below, np.isfinite(lo)), np.minimum(lower, bottom), lower)
    return lower, upper


def _recurs(beyond: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per column (time of day), whether the days (rows) beyond the band recur: on two days or more,
    on `RECUR_SHARE` of the days seen, and `RECUR_CONTRAST` times as often as at other times of day
    (a band that noise crosses everywhere has no recurring time)."""
    days = beyond.sum(axis=0)
    share = days / np.maximum(seen.sum(axis=0), 1)
    overall = beyond.sum() / max(int(seen.sum()), 1)
    return (days >= 2) & (share >= RECUR_SHARE) & (share >= RECUR_CONTRAST * overall)


def _position(train: Series, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per timestamp of `ts`, the index of the training point nearest at or after it, and whether
    that point is within a step of it (else there is no value there)."""
    pos = np.clip(np.searchsorted(train.timestamps, ts), 0, len(train.timestamps) - 1)
    return pos, np.abs(train.timestamps[pos] - ts) < train.step


def _last_like_day(ts: np.ndarray, train: Series) -> np.ndarray:
    """Per timestamp, how many days back (2..6) the latest day of the same kind (weekday or weekend
    day) with data lies; 0 where that is yesterday or there is none (nothing to add)."""
    seen = train.timestamps[np.isfinite(train.values)] // 86400  # ascending, as the timestamps
    weekend = _day_of_week(ts) >= 5
    out = np.zeros(len(ts), dtype=np.int64)
    for lag in range(6, 0, -1):  # the nearest wins
        day = ts // 86400 - lag
        at = np.minimum(np.searchsorted(seen, day), max(len(seen) - 1, 0))
        like = ((_day_of_week(day * 86400) >= 5) == weekend) & (seen[at] == day if len(seen) else False)
        out = np.where(like, lag, out)
    return np.where(out >= 2, out, 0)


def _day_of_week(ts: np.ndarray) -> np.ndarray:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return ((np.asarray(ts) // 86400) + 3) % 7
