"""Walk-forward backtest: replay a series as the daemon would live it, one row per point.

At each period boundary a model is fitted on the trailing history strictly before the boundary and
predicts the band for the period that follows; the band then goes through the alert logic of
the generated Prometheus rules (`smartmetrics.engine.firing`: score threshold, `direction`, minimum
deviations, `for`, `keep_firing_for`, and the stuck and sustained alerts). Peers are just other fit
functions (or, for rule-based peers, causal band functions), so every detector is judged by this
one loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from smartmetrics.engine.alerts import widen_edges
from smartmetrics.engine.firing import (
    AlertRules,
    Fired,
    anomaly_condition,
    firing_and_onsets,
    rule_score,
    stuck_window,
)
from smartmetrics.engine.follow import replay_follow
from smartmetrics.engine.ranges import clip_band, stored_range
from smartmetrics.engine.releases import SETTLE, replay_releases
from smartmetrics.engine.series import Series
from smartmetrics.engine.state import young_band
from smartmetrics.engine.stuck import held_seconds
from smartmetrics.engine.sustained import rolling_mean, window_seconds

COLUMNS = ["timestamp", "value", "yhat", "yhat_lower", "yhat_upper", "anomaly_score", "firing", "alert", "alerts"]
DAY = 86400


class Band(Protocol):
    """Anything that can give `(yhat, lower, upper)` for timestamps (NaN where it has no forecast)."""

    def band_at(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


FitFn = Callable[[Series, int], "Band | None"]
BandFn = Callable[[Series], tuple[np.ndarray, np.ndarray, np.ndarray]]
WidenFn = Callable[[int], Mapping[str, float]]
"""The feedback widening a retrain at a boundary applies (`smartmetrics.engine.alerts.feedback_schedule`)."""


def slice_series(series: Series, start: int, stop: int) -> Series:
    """The part of `series` with `start <= timestamp < stop` (same labels, step and name)."""
    keep = (series.timestamps >= start) & (series.timestamps < stop)
    return Series(
        labels=dict(series.labels), timestamps=series.timestamps[keep].copy(),
        values=series.values[keep].copy(), step=series.step, name=series.name, meta=dict(series.meta),
    )


def period_starts(series: Series, retrain_every: int, min_history: int, young: int = 0,
                  history: float = float("inf")) -> list[int]:
    """Retrain times: multiples of `retrain_every` (a daily cron at 00:00 UTC) once `min_history` exists.

    With `young` (seconds), as the daemon lives a series that appears: its first band `young` after
    its first point (`first_band`), refitted each time its history doubles while it is young
    (`smartmetrics.engine.state.young_band`, in a `history` window), and at every daily retrain from
    then on; `min_history` is not used.

    >>> s = Series({}, np.arange(0, 3 * DAY, 3600), np.zeros(72), 3600)
    >>> period_starts(s, DAY, DAY)
    [86400, 172800]
    >>> [t // 3600 for t in period_starts(s, DAY, DAY, young=3 * 3600)]
    [3, 6, 12, 24, 48]
    >>> s.values[:30] = np.nan  # on a fetch's grid, the series' first point at 30h
    >>> [t // 3600 for t in period_starts(s, DAY, DAY, young=3 * 3600)]
    [33, 36, 42, 48, 66]
    """
    seen = series.timestamps[np.isfinite(series.values)]
    if len(seen) == 0:
        return []
    if young <= 0:
        first = -(-(series.start + min_history) // retrain_every) * retrain_every
        return list(range(first, series.end + 1, retrain_every))
    start = int(seen[0])
    out, t = [], start + young
    while t <= series.end:
        out.append(t)
        retrain = (t // retrain_every + 1) * retrain_every
        span = t - start  # the history of the fit just made: refitted as it doubles while young
        t = min(retrain, start + 2 * span) if young_band(span, history) else retrain
    return out


def first_band(step: int, min_history: float) -> int:
    """Seconds from a series' first point to its first band in the daemon: `min_history`, or the
    points a fit needs before it gives a band (`ensemble.MIN_YOUNG`) if that is longer. Pass it to
    `period_starts` as `young`.

    >>> first_band(300, 86400), first_band(300, 0)
    (86400, 3600)
    """
    from smartmetrics.engine.ensemble import MIN_YOUNG

    return max(MIN_YOUNG * int(step), int(min_history))


@dataclass(frozen=True)
class WalkForward:
    """Per point: the band predicted for it, and its model's stuck limit (seconds) and limits of the
    trailing mean (NaN: none)."""

    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    stuck_after: np.ndarray
    mean_lower: np.ndarray
    mean_upper: np.ndarray
    periods: tuple[tuple[int, int], ...] = ()  # `[start, stop)` predicted by each fitted model
    floor: np.ndarray | None = None  # per point, the natural range of the model's series (NaN: none)
    ceiling: np.ndarray | None = None
    widened: tuple[tuple[int, dict[str, float]], ...] = ()  # (period start, factors) where feedback widened

    def with_feedback(self, series: Series, widen: WidenFn | None) -> WalkForward:
        """This band with each period widened as on-call's feedback given before its retrain asks
        (`smartmetrics.engine.alerts.widen_edges`), as the daemon widens the bands of a retrain."""
        if widen is None:
            return self
        lower, upper, widened = self.lower.copy(), self.upper.copy(), []
        for start, stop in self.periods:
            factors = dict(widen(start))
            if not factors:
                continue
            rows = (series.timestamps >= start) & (series.timestamps < stop)
            lower[rows], upper[rows] = widen_edges(self.yhat[rows], lower[rows], upper[rows], factors)
            widened.append((start, factors))
        yhat, lower, upper = self.clipped(self.yhat, lower, upper)  # the daemon serves it clipped too
        return dataclasses.replace(self, yhat=yhat, lower=lower, upper=upper, widened=(*self.widened, *widened))

    def clipped(self, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, ...]:
        """A moved band put back inside the natural range, as the daemon clips what it serves."""
        return clip_band(yhat, lower, upper, (self.floor, self.ceiling))

    def with_releases(self, series: Series, releases: tuple[float, ...], settle: float, absorb: str) -> WalkForward:
        """This band with release re-anchoring (`smartmetrics.engine.releases`) applied, as the daemon would."""
        if not releases:
            return self
        yhat, lower, upper, mean_lower, mean_upper = replay_releases(
            series.timestamps, series.values, self.yhat, self.lower, self.upper,
            (self.mean_lower, self.mean_upper), releases, self.periods,
            settle=settle, absorb=absorb,
        )
        stuck = np.where(np.isnan(lower) & ~np.isnan(self.lower), np.nan, self.stuck_after)  # held, not moved
        yhat, lower, upper = self.clipped(yhat, lower, upper)
        return dataclasses.replace(self, yhat=yhat, lower=lower, upper=upper, stuck_after=stuck,
                                   mean_lower=mean_lower, mean_upper=mean_upper)

    def with_follow(self, series: Series, after: float, absorb: str = "both") -> WalkForward:
        """This band following new levels the series stays at for `after` seconds (`smartmetrics.engine.follow`),
        as the daemon's follow pass would; `after` 0 leaves it as it is."""
        if after <= 0:
            return self
        yhat, lower, upper, mean_lower, mean_upper = replay_follow(
            series.timestamps, series.values, self.yhat, self.lower, self.upper,
            (self.mean_lower, self.mean_upper), self.periods, after=after, absorb=absorb,
        )
        yhat, lower, upper = self.clipped(yhat, lower, upper)
        return dataclasses.replace(self, yhat=yhat, lower=lower, upper=upper, mean_lower=mean_lower,
                                   mean_upper=mean_upper)


def walk_forward_band(
    series: Series, fit: FitFn, *, retrain_every: int, history: int, min_history: int, young: int = 0
) -> WalkForward:
    """Bands for every point, each period predicted by a model fitted only on data before it (periods
    from `period_starts`)."""
    n = len(series)
    yhat, lower, upper, stuck, mean_lower, mean_upper, floor, ceiling = (np.full(n, np.nan) for _ in range(8))
    periods = []
    starts = period_starts(series, retrain_every, min_history, young, history)
    for boundary, stop in zip(starts, [*starts[1:], starts[-1] + retrain_every] if starts else [], strict=True):
        train = slice_series(series, boundary - history, boundary)
        if train.observed == 0:
            continue
        target = (series.timestamps >= boundary) & (series.timestamps < stop)
        horizon = stop - train.end
        model = fit(train, int(horizon))
        if model is None:
            continue
        periods.append((boundary, stop))
        y, lo, hi = model.band_at(series.timestamps[target])
        yhat[target], lower[target], upper[target] = y, lo, hi
        limit = getattr(model, "stuck_after", 0)
        stuck[target] = limit if limit > 0 else np.nan
        limits = getattr(model, "sustained", None) or {}
        for arr, key in ((mean_lower, "lower"), (mean_upper, "upper")):
            arr[target] = np.nan if limits.get(key) is None else limits[key]
        bounds = stored_range(getattr(model, "training", None)) or (None, None)
        for arr, bound in ((floor, bounds[0]), (ceiling, bounds[1])):
            arr[target] = np.nan if bound is None else bound
    return WalkForward(yhat, lower, upper, stuck, mean_lower, mean_upper, tuple(periods), floor, ceiling)


def stuck_points(series: Series, stuck_after: np.ndarray | None) -> np.ndarray:
    """Points whose value has not changed for at least their model's `stuck_after` seconds.

    >>> s = Series({}, np.arange(5) * 60, np.array([1.0, 2.0, 2.0, 2.0, 3.0]), 60)
    >>> stuck_points(s, np.full(5, 120.0)).astype(int).tolist()  # the rule's window: rounded up to a minute
    [0, 0, 0, 1, 0]
    """
    if stuck_after is None:
        return np.zeros(len(series), dtype=bool)
    held = held_seconds(series.timestamps, series.values)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(held, nan=-1.0) >= np.nan_to_num(stuck_window(stuck_after), nan=np.inf)


def sustained_points(series: Series, mean_lower: np.ndarray | None, mean_upper: np.ndarray | None,
                     direction: str = "both") -> np.ndarray:
    """Points whose trailing mean (`smartmetrics.engine.sustained`) is beyond its model's limits (NaN: none).

    >>> s = Series({}, np.arange(0, 7200, 600), np.r_[np.zeros(6), np.full(6, 5.0)], 600)
    >>> sustained_points(s, None, np.full(12, 2.0)).astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    """
    out = np.zeros(len(series), dtype=bool)
    if len(series) == 0 or (mean_lower is None and mean_upper is None):
        return out
    mean = rolling_mean(series.timestamps, series.values, window_seconds(series.step), series.step)
    with np.errstate(invalid="ignore"):
        if mean_upper is not None and direction != "down":
            out |= mean > mean_upper
        if mean_lower is not None and direction != "up":
            out |= mean < mean_lower
    return out & np.isfinite(series.values)  # a missing scrape is no evidence, as the rule's presence guard


def replay_alerts(series: Series, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, rules: AlertRules, *,
                  stuck_after: np.ndarray | None = None, mean_lower: np.ndarray | None = None,
                  mean_upper: np.ndarray | None = None) -> Fired:
    """What the baseline's generated rules fire on `series` with this band (`smartmetrics.engine.firing`):
    the anomaly alert always; the stuck alert where `stuck_after` is given (per point, seconds; NaN
    none) and `rules.stuck`; the sustained alert where mean limits are given and `rules.sustained`."""
    step = series.step
    # the exporter serves a series' constants only while it has a band (none while a maintenance
    # window, a settling release or a withheld fit hides it): the stuck and sustained rules then match nothing
    no_band = ~(np.isfinite(yhat) & np.isfinite(lower) & np.isfinite(upper))
    stuck_after, mean_lower, mean_upper = (None if a is None else np.where(no_band, np.nan, a)
                                           for a in (stuck_after, mean_lower, mean_upper))
    condition = anomaly_condition(series.values, yhat, lower, upper, rules)
    by_kind = {"anomaly": firing_and_onsets(condition, rules.for_points(step), rules.keep_points(step))[0]}
    if rules.stuck and stuck_after is not None:
        by_kind["stuck"] = stuck_points(series, stuck_after)  # no `for`, no `keep_firing_for`
    if rules.sustained and (mean_lower is not None or mean_upper is not None):
        beyond = sustained_points(series, mean_lower, mean_upper, rules.direction)
        by_kind["sustained"] = firing_and_onsets(beyond, 1, rules.keep_points(step))[0]
    return Fired(by_kind)


def assemble_frame(
    series: Series, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, rules: AlertRules, *,
    stuck_after: np.ndarray | None = None, mean_lower: np.ndarray | None = None,
    mean_upper: np.ndarray | None = None,
) -> pd.DataFrame:
    """The backtest table (DESIGN.md columns, plus `alerts`) from a series, its band and the rules.

    `firing` and `alert` cover every alert of the baseline (`replay_alerts`); `alerts` names the ones
    firing on each row (`anomaly`, `stuck`, `sustained`, joined by `+`).
    """
    values = series.values
    score = rule_score(values, yhat, lower, upper)
    fired = replay_alerts(series, yhat, lower, upper, rules, stuck_after=stuck_after, mean_lower=mean_lower,
                          mean_upper=mean_upper)
    return pd.DataFrame({
        "timestamp": series.timestamps, "value": values, "yhat": yhat, "yhat_lower": lower,
        "yhat_upper": upper, "anomaly_score": score, "firing": fired.firing.astype(np.int8),
        "alert": fired.alert.astype(np.int8), "alerts": fired.names(),
    }, columns=COLUMNS)


def backtest_series(
    series: Series, fit: FitFn, rules: AlertRules, *, retrain_every: int = DAY, history: int = 14 * DAY,
    min_history: int = DAY, releases: tuple[float, ...] = (), settle: float = SETTLE, absorb: str = "both",
    follow: float = 0.0, follow_absorb: str = "both", widen: WidenFn | None = None, young: int = 0,
) -> pd.DataFrame:
    """Walk-forward replay of one series with a retrained model; one row per input point, alerts as
    `rules` fire them.

    With `widen` each retrain's band is widened as on-call's feedback given before it asks; with
    `releases` (Unix seconds) each model's band is re-anchored after them (`smartmetrics.engine.releases`);
    with `follow` (seconds) it follows a level the series stays at that long (`smartmetrics.engine.follow`);
    with `young` (seconds), retrains as the daemon's for a series that appears (`period_starts`).
    """
    band = walk_forward_band(series, fit, retrain_every=retrain_every, history=history, min_history=min_history,
                             young=young)
    band = band.with_feedback(series, widen).with_releases(series, releases, settle, absorb)
    band = band.with_follow(series, follow, follow_absorb)
    return band_frame(series, band, rules)


def band_frame(series: Series, band: WalkForward, rules: AlertRules) -> pd.DataFrame:
    """The backtest table of a walk-forward band, with all of its alerts."""
    return assemble_frame(series, band.yhat, band.lower, band.upper, rules, stuck_after=band.stuck_after,
                          mean_lower=band.mean_lower, mean_upper=band.mean_upper)


def backtest_live(
    series: Series, band: BandFn, rules: AlertRules, *, retrain_every: int = DAY, min_history: int = DAY,
    young: int = 0,
) -> pd.DataFrame:
    """Replay of a rule-based detector whose band is computed causally from live data (no retrain).

    Rows before the first retrain boundary are blanked so the detector is judged on the same rows
    as the retrained ones.
    """
    yhat, lower, upper = (np.asarray(a, dtype=np.float64).copy() for a in band(series))
    starts = period_starts(series, retrain_every, min_history, young)
    early = series.timestamps < (starts[0] if starts else series.end + 1)
    for arr in (yhat, lower, upper):
        arr[early] = np.nan
    return assemble_frame(series, yhat, lower, upper, rules)
