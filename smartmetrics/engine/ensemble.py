"""The ensemble: per series, the models that suit its curve type, weighted by a walk-forward backtest,
combined, and given a calibrated band; `fit_series` is the one entry point.

`fit_series(series, settings)` is a pure function (no clock, no I/O, no globals), so the daemon and
the backtest can run it in a process pool. Steps: classify, clean the training data, choose the
candidates, backtest each on the last day(s), weight (failures and clearly bad members dropped),
refit on all data, combine, calibrate (split conformal on the backtest residuals), and tabulate
the forecast `series.end + step .. series.end + horizon`. A model that raises is dropped; the
fallback model guarantees a result.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartmetrics import __version__
from smartmetrics.engine import stuck, sustained
from smartmetrics.engine.bands import (
    Calibration,
    allow_reversal,
    apply_band,
    band_policy,
    calibrate,
    first_week_priors,
    held_out_coverage,
    last_week_prior,
    recurring_excursions,
)
from smartmetrics.engine.calendars import (
    Transitions,
    Widenings,
    Windows,
    holiday_band,
    in_windows,
    local_horizon,
    masked,
    on_days,
    table_at_utc,
    to_local,
    utc_offsets,
    widen_band,
)
from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.models import MODELS
from smartmetrics.engine.models.base import DAY, WEEK, Forecast, sub_series
from smartmetrics.engine.models.profile import daily_slope
from smartmetrics.engine.ranges import clip_band, natural_range
from smartmetrics.engine.regimes import Regime, blip_band, current_level, find_regimes, regime_band
from smartmetrics.engine.releases import SETTLE
from smartmetrics.engine.series import Series, on_grid
from smartmetrics.engine.state import json_safe
from smartmetrics.engine.training import (
    clean_training,
    episodes,
    excursions,
    habit_episodes,
    one_off_episodes,
    quick_classify,
    recurring,
    relevel,
    resting_value,
    weekly_effect,
)

SCHEMA_VERSION = 1
FALLBACK = "fallback"
CANDIDATES: dict[str, tuple[str, ...]] = {
    "seasonal": ("profile_day", "profile_week"),
    "stable": ("level", "profile_day"),
    "trending": ("profile_day", "stl", "level"),
    "intermittent": ("intermittent", "level"),
    "level_shift": ("level", "profile_day"),
    "noisy": ("level", "profile_day"),
    "regime": ("level", "profile_day"),
    "constant": ("level",),
    "insufficient": ("level",),
}
MIN_HISTORY: dict[str, int] = {"profile_week": 2 * DAY, "profile_day": DAY}
SPARSE = ("intermittent", "constant")
UNMASKED = SPARSE + ("regime",)  # their extremes are their nature, not incidents. A noisy series is
# cleaned like the others: `training.anomaly_mask` leaves heavy tails alone (more than 2% of points
# beyond its z) and `training.recurring` keeps spikes that recur, so only one-off incidents go
DROP_RATIO = 1.5
COLD_DAYS = 7
MIN_POINTS = 48  # fewer finite points than this (`classify.MIN_POINTS`), scattered: the band is withheld...
MIN_YOUNG = 12  # ...and below this many, however dense
MAX_FOLDS = 4
LEVEL_MOVE = 3.0
"""A fit classifies again when the last day's median moved by more than this many interquartile
ranges of the history since the last classification (`kept_classification`)..."""
SHARE_MOVE = 0.1
"""...or the share of the last day's values sitting at that median moved by more than this."""


@dataclass(frozen=True)
class FitSettings:
    """Per-baseline knobs of a fit (see `smartmetrics.engine.bands` for what sensitivity means)."""

    sensitivity: str | float = "medium"
    curve_type: str = "auto"
    models: tuple[str, ...] | None = None
    horizon: int = 86400
    allow_prophet: bool = False
    settle: float = SETTLE  # a release's settle time and the shifts taken as the new normal
    absorb: str = "both"    # (`smartmetrics.engine.releases`), for the releases a fit is given
    range: tuple[float | None, float | None] | None = None  # the configured natural range (`smartmetrics.engine.ranges`)
    hints: str = ""  # names that may say ratio, utilisation or percent: the alias and the expr
    local_time: Transitions = ()  # the zone's UTC offsets; () is UTC (`smartmetrics.engine.calendars`)
    holidays: tuple[int, ...] = ()  # local day numbers (days since 1970-01-01) fitted like a weekend day
    withdrawn: Windows = ()  # maintenance windows: out of training, no band while they last
    widened: Widenings = ()  # expected changes: out of training, the band widened while they last
    min_history: int = 0  # seconds of history before a band: a younger series is learning (`_learning`)


@dataclass
class FittedSeries:
    """A fitted series: what was chosen and why, and the forecast table the exporter serves."""

    labels: dict[str, str]
    step: int
    classification: dict[str, Any]
    members: list[dict[str, Any]]
    coverage: dict[str, Any]
    timestamps: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    data_start: int
    data_end: int
    training: dict[str, Any] = field(default_factory=dict)

    def band_at(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(yhat, lower, upper) interpolated in the table; NaN outside it (never a stale guess)."""
        return on_grid(self.timestamps, timestamps, self.yhat, self.lower, self.upper)  # type: ignore[return-value]

    @property
    def stuck_after(self) -> int:
        """Seconds without a change after which the series counts as stuck (0: never)."""
        return int(self.training.get("stuck_after", 0) or 0)

    @property
    def sustained(self) -> dict[str, Any] | None:
        """Limits of the trailing mean (`{"window", "lower", "upper"}`, see `smartmetrics.engine.sustained`), or None."""
        return self.training.get("sustained") or None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with a schema version (NaN written as null)."""
        def col(a: np.ndarray) -> list:
            return [float(v) if np.isfinite(v) else None for v in a]

        return {
            "schema": SCHEMA_VERSION, "labels": dict(self.labels), "step": int(self.step),
            "classification": self.classification, "members": self.members, "coverage": self.coverage,
            "training": self.training, "data_start": int(self.data_start), "data_end": int(self.data_end),
            "table": {"timestamps": [int(t) for t in self.timestamps], "yhat": col(self.yhat),
                      "lower": col(self.lower), "upper": col(self.upper)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedSeries:
        """Inverse of `to_dict`; refuses schemas newer than this code understands."""
        if int(data.get("schema", 0)) > SCHEMA_VERSION:
            raise ValueError(f"fitted series schema {data.get('schema')} is newer than {SCHEMA_VERSION}")
        table = data["table"]

        def col(name: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in table[name]], dtype=np.float64)

        return cls(
            labels=dict(data["labels"]), step=int(data["step"]), classification=data["classification"],
            members=list(data["members"]), coverage=dict(data["coverage"]),
            timestamps=np.array(table["timestamps"], dtype=np.int64), yhat=col("yhat"), lower=col("lower"),
            upper=col("upper"), data_start=int(data["data_start"]), data_end=int(data["data_end"]),
            training=dict(data.get("training", {})),
        )


def classify_for_fit(series: Series, curve_type: str) -> dict[str, Any]:
    """The classifier's verdict as a dict (quick statistics if it is unavailable), overridden by config."""
    try:
        from smartmetrics.engine.classify import classify_series

        result = classify_series(series).to_dict()
    except Exception:  # noqa: BLE001 - classification must never fail a fit
        result = quick_classify(series)
    result = dict(result)
    result["periods"] = [int(p) for p in result.get("periods", ())]
    if curve_type != "auto":
        result["curve_type"] = curve_type
        if curve_type == "seasonal" and not result["periods"]:
            result["periods"] = [DAY]
    return result


def choose_candidates(curve_type: str, settings: FitSettings, history: int, weekly: bool = False) -> list[str]:
    """Model names to try: the override or the curve type's set (of the two profiles, the weekly one
    when a week's pattern is known, else the daily one), filtered by history, unknown dropped.

    The weekly profile on a curve with no week's pattern fits noise into its half hours of the week, at
    2.6 times the daily profile's cost; without it there, false alerts fell on every corpus and the
    events caught moved by one or two either way (BENCHMARKS.md, issue 22)."""
    names = list(settings.models) if settings.models else list(CANDIDATES.get(curve_type, ("level",)))
    if not settings.models:
        week_known = weekly and history >= MIN_HISTORY["profile_week"]
        names = [n for n in names if n != ("profile_day" if week_known else "profile_week")]
    if settings.allow_prophet and not settings.models and curve_type in ("seasonal", "trending"):
        names.append("prophet")
    names = [n for n in names if n in MODELS and history >= MIN_HISTORY.get(n, 0)]
    return [n for n in dict.fromkeys(names) if n != FALLBACK] or ["level"]


def backtest_folds(n: int, step: int) -> list[tuple[int, int]]:
    """Walk-forward (train_stop, test_stop) index pairs over the last day(s), shorter for cold starts."""
    history = n * step
    fold = DAY if history >= 3 * DAY else max(history // 4, 2 * step)
    fold_points = max(1, fold // step)
    count = int(np.clip(history // DAY - 3, 1, MAX_FOLDS))
    return [(n - k * fold_points, n - (k - 1) * fold_points) for k in range(count, 0, -1)]


def _fit_model(name: str, series: Series):
    return MODELS[name]().fit(series)


def _backtest_member(name: str, series: Series, folds: list[tuple[int, int]]) -> Forecast | None:
    """The member's out-of-sample forecasts over all folds concatenated, or None if it failed."""
    means, scales = [], []
    try:
        for train_stop, test_stop in folds:
            model = _fit_model(name, sub_series(series, train_stop))
            fc = model.predict(series.timestamps[train_stop:test_stop])
            if not (np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.scale)) and np.all(fc.scale > 0)):
                return None
            means.append(fc.mean)
            scales.append(fc.scale)
    except Exception:  # noqa: BLE001 - one model failing never fails the fit
        return None
    return Forecast(np.concatenate(means), np.concatenate(scales))


def score_member(y: np.ndarray, fc: Forecast, spread: float) -> dict[str, float]:
    """Normalised MAE and 90% interval score of a member's own band on the test points."""
    ok = np.isfinite(y)
    if not ok.any():
        return {"mae": 1.0, "interval_score": 4.0, "loss": 1.4}
    y, mean, scale = y[ok], fc.mean[ok], fc.scale[ok]
    lo, hi = mean - 1.645 * scale, mean + 1.645 * scale
    interval = (hi - lo) + 20 * np.maximum(lo - y, 0) + 20 * np.maximum(y - hi, 0)
    mae = float(np.mean(np.abs(y - mean))) / spread
    iscore = float(np.mean(interval)) / spread
    return {"mae": mae, "interval_score": iscore, "loss": mae + 0.1 * iscore}


def weigh(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Weights proportional to 1/loss^2 among members within `DROP_RATIO` of the best loss.

    >>> weigh({"a": {"loss": 1.0}, "b": {"loss": 2.0}, "c": {"loss": 1.0}})
    {'a': 0.5, 'c': 0.5}
    """
    best = min(s["loss"] for s in scores.values())
    kept = {n: s["loss"] for n, s in scores.items() if s["loss"] <= DROP_RATIO * best + 1e-12}
    raw = {n: 1.0 / max(loss, 1e-12) ** 2 for n, loss in kept.items()}
    total = sum(raw.values())
    return {n: w / total for n, w in raw.items()}


def combine(forecasts: dict[str, Forecast], weights: dict[str, float]) -> Forecast:
    """Weighted mean of the members' means and scales."""
    mean = sum(weights[n] * forecasts[n].mean for n in weights)
    scale = sum(weights[n] * forecasts[n].scale for n in weights)
    return Forecast(np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64))


# Most a half-band may be, in spans (0.5%..99.5% quantiles) of the training history. Without it, a
# series that sits on one value for hours (a histogram quantile on a bucket edge, a quantised gauge)
# gets slot scales near zero, normalised residuals in the thousands, and bands that explode wherever
# the scale is ordinary.
SPAN_CAP = 2.0


def _spread(y: np.ndarray) -> float:
    """Interquartile range of the finite values, or a tiny positive number."""
    y = y[np.isfinite(y)]
    if len(y) == 0:
        return 1e-9
    q1, q3 = np.quantile(y, [0.25, 0.75])
    iqr = float(q3 - q1)
    return iqr if iqr > 0 else max(float(np.std(y)), 1e-3 * float(np.median(np.abs(y))), 1e-9)


def select_members(train: Series, names: list[str]) -> tuple[dict[str, float], list[dict], Forecast, np.ndarray,
                                                               np.ndarray]:
    """Backtest the candidates; weights, member reports, the combined backtest forecast and its truth."""
    folds = backtest_folds(len(train), train.step)
    first = folds[0][0]
    y_test = train.values[first:]
    t_test = train.timestamps[first:]
    spread = _spread(train.values[:first])
    forecasts = {n: fc for n in names if (fc := _backtest_member(n, train, folds)) is not None}
    if not forecasts:
        forecasts = {FALLBACK: _backtest_member(FALLBACK, train, folds)}
    scores = {n: score_member(y_test, fc, spread) for n, fc in forecasts.items()}
    weights = weigh(scores)
    members = [{"name": n, "weight": weights.get(n, 0.0), **{k: round(v, 6) for k, v in scores[n].items()}}
               for n in forecasts]
    return weights, members, combine(forecasts, weights), y_test, t_test


def refit(train: Series, weights: dict[str, float], timestamps: np.ndarray,
          seen: np.ndarray | None = None) -> tuple[dict[str, float], Forecast, Forecast | None]:
    """Refit the weighted members on all training data; failures dropped, the fallback if none is left.
    With `seen` (training timestamps), also the refitted ensemble's in-sample forecast there."""
    forecasts: dict[str, Forecast] = {}
    models = {}
    for name in weights:
        try:
            model = _fit_model(name, train)
            fc = model.predict(timestamps)
        except Exception:  # noqa: BLE001 - one model failing never fails the fit
            continue
        if np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.scale)):
            forecasts[name], models[name] = fc, model
    if not forecasts:
        models = {FALLBACK: MODELS[FALLBACK]().fit(train)}
        forecasts = {FALLBACK: models[FALLBACK].predict(timestamps)}
    total = sum(weights.get(n, 0.0) for n in forecasts) or 1.0
    kept = {n: (weights.get(n, 0.0) / total if n in weights else 1.0) for n in forecasts}
    insample = None
    if seen is not None:
        try:  # only a kept ensemble's check needs it: a model that cannot say it stays in the band
            insample = combine({n: models[n].predict(seen) for n in kept}, kept)
        except Exception:  # noqa: BLE001
            insample = None
    return kept, combine(forecasts, kept), insample


def _rescaled(cal: Calibration, backtest_scale: np.ndarray, scale: np.ndarray) -> Calibration:
    """A young fit's calibration in the units of its refitted scale: under three days, the backtest's
    members learned from a shorter history than the refit (half a day less of a day and a half), and a
    profile's slot scale from one cycle is a fraction of its scale from two; offsets in the backtest's
    scales would widen the refit's band by that ratio. Both scales are taken at the same times (the
    backtest's test points), or the ratio would say what time of day the fit ran at on a series whose
    noise follows the hour; unchanged without a finite ratio."""
    if len(backtest_scale) == 0 or len(backtest_scale) != len(scale):
        return cal
    ratio = float(np.median(backtest_scale) / np.median(scale))
    if not np.isfinite(ratio) or ratio <= 0:
        return cal
    ratio = float(np.clip(ratio, 0.5, 2.0))
    return dataclasses.replace(cal, q_lo=cal.q_lo * ratio, q_hi=cal.q_hi * ratio)


def cold_start_widening(history_seconds: float) -> float:
    """Band multiplier for short histories: 1.5 at one day, falling linearly to 1 at `COLD_DAYS` days.

    >>> cold_start_widening(86400), cold_start_widening(14 * 86400)
    (1.5, 1.0)
    """
    days = history_seconds / DAY
    return 1.0 + 0.5 * float(np.clip((COLD_DAYS - days) / (COLD_DAYS - 1), 0.0, 1.0))


def fit_series(series: Series, settings: FitSettings, releases: tuple[int, ...] = (),
               previous: Mapping[str, Any] | None = None) -> FittedSeries:
    """Fit the ensemble to one series and tabulate its calibrated band over the horizon (pure).

    `releases` are the times of the series' releases in its history (`smartmetrics.engine.releases`): the
    shift each settled one made is undone in the training data, as the daemon moved the band for it.
    `previous` is the classification of the series' last fit (`FittedSeries.classification`, as
    stored): a daily retrain keeps it while `kept_classification` allows, instead of classifying again.
    A time zone, holidays, maintenance windows or expected changes fit it on the local clock (`_fit_on_calendar`).
    """
    _check_magnitude(series)
    if settings.local_time or settings.holidays or settings.withdrawn or settings.widened:
        fitted = _fit_on_calendar(series, settings, releases, previous)
    else:
        fitted = _fit_utc(series, settings, releases, previous)
    return _learning(fitted, series, settings.min_history)


def _learning(fitted: FittedSeries, series: Series, min_history: int) -> FittedSeries:
    """The fit with the span of history it saw (`training["history"]`, first to last finite point),
    and its band withheld while that is under `min_history`, its stuck and sustained alerts off: a
    series that appeared an hour ago has not shown its day yet, and a band from its first hours
    alerts on the rest of it (the daemon's discovery fits it again once `training["learning_until"]`
    has passed)."""
    ok = np.flatnonzero(np.isfinite(series.values))
    if len(ok) == 0:
        return fitted
    first = int(series.timestamps[ok[0]])
    span = int(series.timestamps[ok[-1]]) - first + int(series.step)
    fitted.training["history"] = span
    if span >= min_history:
        return fitted
    fitted.training["withheld"] = (f"learning: {format_duration(span)} of history, a band from "
                                   f"{format_duration(min_history)} on (the baseline's min_history)")
    fitted.training["learning_until"] = first + int(min_history)
    fitted.training["stuck_after"] = 0  # no alert of any kind while learning: neither stuck...
    fitted.training.pop("sustained", None)  # ...nor sustained
    none = np.full(len(fitted.yhat), np.nan)
    return dataclasses.replace(fitted, yhat=none, lower=none.copy(), upper=none.copy())


# Largest finite |value| a fit takes: its variances square values, and a square above ~1.8e308 is
# infinite (seasonal curves then classify as stable, sparse ones fail inside the ensemble).
MAX_MAGNITUDE = 1e150


def _check_magnitude(series: Series) -> None:
    """Raise a ValueError that says what to do when the series' values are too large to fit."""
    finite = np.abs(series.values[np.isfinite(series.values)])
    if len(finite) and (top := float(finite.max())) > MAX_MAGNITUDE:
        raise ValueError(f"values up to {top:.3g} are beyond what a fit can square in float64 (at most "
                         f"{MAX_MAGNITUDE:.0e}): divide the series in its query, e.g. `(my_metric) / 1e150`")


def _copied(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), a fifth of `copy.deepcopy`'s cost;
    anything else goes to `copy.deepcopy`."""
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    if type(value) is list:
        return [_copied(v) for v in value]
    if value is None or type(value) in (str, int, float, bool):
        return value
    return copy.deepcopy(value)


def kept_classification(previous: Mapping[str, Any] | None, series: Series, curve_type: str = "auto"
                        ) -> dict[str, Any] | None:
    """A copy of `previous` (the classification of the series' last fit, as stored) if this fit may
    keep it, else None (classify again).

    Classification and the day-of-week test are about a third of a fit, and a curve's type seldom
    changes from one day to the next. A fit keeps it while all of these hold:

    - it was made in the series' current week: each series is classified afresh once a week, on a
      weekday of its own (`reclassify_week`), so a daily retrain reclassifies a seventh of its series;
    - by this version of smartmetrics, on a history (first to last finite point) as long as this one
      within 10% (a young series is classified again as it grows);
    - the last day's median has not moved by more than `LEVEL_MOVE` interquartile ranges of the
      history then, nor the share of the last day's values sitting exactly at that median by more
      than `SHARE_MOVE` (a shift, or a flat gauge that starts to move, is a reason to look again);
    - a configured curve type has not changed; the verdict was not `insufficient`; nothing in it is
      malformed (a hand-edited store).

    A kept `regime` verdict has its regimes found again (`_fit_utc`): they shape the band.

    >>> t = np.arange(0, 8 * DAY, 3600)
    >>> s = Series({}, t, np.sin(t / DAY * 2 * np.pi) + 10, 3600)
    >>> first = fit_series(s, FitSettings()).classification
    >>> kept_classification(first, s)["curve_type"] == first["curve_type"]
    True
    >>> later = Series({}, t + 8 * DAY, s.values, 3600)  # eight days on: classified again
    >>> moved = Series({}, t, s.values + 5, 3600)  # 5 against an interquartile range of 1.4
    >>> kept_classification(first, later), kept_classification(first, moved)
    (None, None)
    """
    if not isinstance(previous, Mapping) or not isinstance(stamp := previous.get("classified"), Mapping):
        return None
    try:
        at, span, level, spread, flat = (float(stamp[k]) for k in ("at", "span", "level", "spread", "flat"))
        curve, periods = previous["curve_type"], previous.get("periods", [])
        if stamp.get("version") != __version__ or not isinstance(curve, str) or not isinstance(periods, list) \
                or not all(type(p) is int and p > 0 for p in periods) \
                or not all(math.isfinite(v) for v in (at, span, level, spread, flat)):
            return None
        kept = _copied(dict(previous))
        for regime in kept.get("regimes", ()):
            Regime(**regime)
    except (KeyError, TypeError, ValueError, ArithmeticError):  # a hand-edited store: 10**400 overflows float()
        return None
    if curve not in CANDIDATES or curve == "insufficient" or (curve_type != "auto" and curve != curve_type):
        return None
    if at > series.end or reclassify_week(at, series.key) != reclassify_week(series.end, series.key):
        return None
    now_span, (now_level, now_flat) = _finite_span(series), _last_day(series)
    if abs(now_span - span) > 0.1 * now_span or not np.isfinite(now_level):
        return None
    if abs(now_level - level) > LEVEL_MOVE * spread or abs(now_flat - flat) > SHARE_MOVE:
        return None
    return kept


KEPT_BULK = 1.5
"""A kept ensemble is backtested again where the newest day's residuals are this many times as wide
as on the day of its backtest, or narrower by as much (`_kept_ensemble_holds`)."""


@dataclasses.dataclass(frozen=True)
class KeptEnsemble:
    """What a backtest chose, as a later fit in the same week reuses it (`kept_ensemble`): the members'
    weights and reports, the calibration, the held-out coverage then, and how the refitted members'
    in-sample residuals looked on the backtest's last day (`bulk`, and the least and most `reach`)."""

    weights: dict[str, float]
    members: list[dict[str, Any]]
    calibration: Calibration
    held_out: float | None
    checked: int
    bulk: float
    reach: tuple[float, float]


def kept_ensemble(record: Any, names: list[str], coverage: float, history: int,
                  folds: int) -> KeptEnsemble | None:
    """The choice a kept classification's backtest made (`_ensemble_record`), or None where it must be
    made again: none recorded (a store from before), other candidates today (the history grew past a
    model's minimum, the models setting changed), another coverage (the sensitivity changed), another
    number of backtest folds or a training history more than 10% longer or shorter (a young series,
    the days since a level shift), or anything malformed.

    The backtest (every candidate over up to four walk-forward days) and its calibration are most of a
    daily refit's cost, and what they decide (which model suits the curve, how heavy its residuals'
    tails are, in units of the models' own scale) seldom changes from one day to the next: a daily
    retrain keeps them with the classification, refits the chosen members on today's history, and
    applies the kept quantiles to today's scale, as long as the newest day agrees
    (`_kept_ensemble_holds`). Each series backtests afresh on its weekly reclassification, whenever its
    classification is not kept, and on a day that does not agree.

    >>> cal = Calibration(-3.0, 3.5, (1.0,), 1, 0.9995, 0.9996, 1152)
    >>> members = [{"name": "level", "loss": 0.2}]
    >>> record = _ensemble_record(["level"], {"level": 1.0}, members, cal, 1.0, 288, 0.9, (-2.0, 2.5),
    ...                           14 * DAY, 4)
    >>> kept_ensemble(record, ["level"], 0.9995, 14 * DAY, 4).calibration == cal
    True
    >>> [kept_ensemble(r, names, coverage, history, 4) is None for r, names, coverage, history in (
    ...     (record, ["level", "profile_day"], 0.9995, 14 * DAY), (record, ["level"], 0.9999, 14 * DAY),
    ...     (record, ["level"], 0.9995, 10 * DAY), ({**record, "n": 1e999}, ["level"], 0.9995, 14 * DAY))]
    [True, True, True, True]
    """
    if not isinstance(record, Mapping):
        return None
    try:
        if list(record["names"]) != list(names) or _finite(record["coverage"]) != coverage \
                or _finite(record["folds"]) != folds \
                or abs(_finite(record["history"]) - history) > 0.1 * history:
            return None
        weights = {k: _finite(v) for k, v in record["weights"].items() if isinstance(k, str)}
        members = [dict(m) for m in record["members"]
                   if isinstance(m, Mapping) and isinstance(m.get("name"), str)]
        factors = tuple(_finite(f) for f in record["factors"])
        period = int(_finite(record["period"]))
        cal = Calibration(_finite(record["q_lo"]), _finite(record["q_hi"]), factors, period, coverage,
                          _finite(record["achieved"]), int(_finite(record["n"])))
        held_out = None if record["held_out"] is None else _finite(record["held_out"])
        checked = int(_finite(record["held_out_n"]))
        lo, hi = (_finite(v) for v in record["reach"])
        kept = KeptEnsemble(weights, members, cal, held_out, checked, _finite(record["bulk"]), (lo, hi))
        reported = {m["name"] for m in members}
        sound = (weights and len(weights) == len(record["weights"]) and set(weights) <= reported
                 and reported <= set(names) and len(members) == len(record["members"])
                 and all(w > 0 for w in weights.values()) and period in (1, DAY) and len(factors) in (1, 4)
                 and all(f > 0 for f in factors) and cal.q_lo <= 0 <= cal.q_hi and lo <= 0 <= hi
                 and kept.bulk >= 0 and cal.n >= 0 and checked >= 0 and (held_out is None or 0 <= held_out <= 1))
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        return None
    return kept if sound else None


def _finite(value: Any) -> float:
    """A finite number read from a stored record, or `ValueError` (booleans and strings are no numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


def _kept_ensemble_holds(values: np.ndarray, timestamps: np.ndarray, seen: Forecast | None,
                         kept: KeptEnsemble) -> bool:
    """Whether a kept ensemble still describes the newest day, judged by the refitted members'
    residuals there in sample (the refit is made anyway), as they were judged on the backtest's day:
    their bulk (80% of |z|) within `KEPT_BULK` times that day's either way, and their least and most no
    further out than `KEPT_BULK` times that day's. A day that disagrees (a change of the noise; an
    excursion cleaning left in training) is backtested in full, as a fit without a kept ensemble is;
    an incident cleaning masked weighs on neither, as it weighs on no backtest."""
    if seen is None:
        return False
    cal = kept.calibration
    zn = _normalised((values - seen.mean) / seen.scale, timestamps, cal)
    if not len(zn):
        return False
    now = _residual_bulk(zn)
    lo, hi = kept.reach
    return bool(kept.bulk / KEPT_BULK <= now <= KEPT_BULK * kept.bulk
                and KEPT_BULK * lo <= zn.min() and zn.max() <= KEPT_BULK * hi)


def _residual_bulk(zn: np.ndarray) -> float:
    """How wide the body of the normalised residuals `zn` is (80% of |zn|), where the band's quantiles
    describe their tails: what `_kept_ensemble_holds` compares from one day to the next."""
    return float(np.quantile(np.abs(zn), 0.8))


def _normalised(z: np.ndarray, timestamps: np.ndarray, cal: Calibration) -> np.ndarray:
    """The finite residuals `z`, each over its time-of-day factor."""
    ok = np.isfinite(z)
    return z[ok] / cal.factors_at(timestamps[ok])


def _ensemble_record(names: list[str], weights: dict[str, float], members: list[dict], cal: Calibration,
                     held_out: float | None, checked: int, bulk: float, reach: tuple[float, float],
                     history: int, folds: int) -> dict[str, Any]:
    """What `kept_ensemble` reads back: the candidates, the backtest's weights and member reports, the
    calibration (floats as they are: JSON keeps them to the bit), the in-sample residuals' bulk and
    reach on the last day, and the training history and number of folds the backtest had."""
    return {"names": list(names), "coverage": cal.coverage, "weights": dict(weights),
            "members": [dict(m) for m in members], "q_lo": cal.q_lo, "q_hi": cal.q_hi,
            "factors": list(cal.bucket_factors), "period": cal.bucket_period, "achieved": cal.achieved,
            "n": cal.n, "held_out": held_out, "held_out_n": checked, "bulk": bulk, "reach": list(reach),
            "history": int(history), "folds": int(folds)}


def reclassify_week(t: float, key: str) -> int:
    """Which of its own weeks `t` falls in for the series of `key` (`Series.key`): weeks start on a
    weekday set by the key, so that a daily retrain classifies a seventh of its series afresh, not all
    of them on one day."""
    return int((t // DAY + zlib.crc32(key.encode()) % 7) // 7)


def _classified(series: Series) -> dict[str, Any]:
    """What `kept_classification` compares a later history with: when, by which version and on how
    long a history the series was classified, its last day's median and share of values at it, and
    the history's interquartile range then."""
    y = series.values[np.isfinite(series.values)]
    spread = float(np.subtract(*np.quantile(y, [0.75, 0.25]))) if len(y) else 0.0
    level, flat = _last_day(series)
    return {"at": int(series.end), "version": __version__, "span": _finite_span(series), "level": level,
            "flat": flat, "spread": spread}


def _finite_span(series: Series) -> int:
    """Seconds from the first finite point to the last, one step included (0 without any): a fetch
    gives a young series the whole history window, NaN before it began."""
    ok = np.flatnonzero(np.isfinite(series.values))
    return int((ok[-1] - ok[0] + 1) * series.step) if len(ok) else 0


def _last_day(series: Series) -> tuple[float, float]:
    """The median of the finite values of the series' last day, and the share of them equal to it
    (NaN and 0 without any)."""
    recent = series.values[series.timestamps > series.end - DAY]
    recent = recent[np.isfinite(recent)]
    if not len(recent):
        return float("nan"), 0.0
    middle = float(np.median(recent))
    return middle, float(np.mean(recent == middle))


def _fit_on_calendar(series: Series, settings: FitSettings, releases: tuple[int, ...],
                     previous: Mapping[str, Any] | None = None) -> FittedSeries:
    """`_fit_utc` on the series moved onto the local clock, without its maintenance windows, expected
    changes and holidays; holidays in the table get their band (`calendars.holiday_band`), the table is
    read back at UTC instants, widened for expected changes (`calendars.widen_band`, within the natural
    range) and withdrawn (NaN) in maintenance windows."""
    zone, holidays = settings.local_time, settings.holidays
    changes = tuple((s, e) for s, e, _, _ in settings.widened)
    planned = settings.withdrawn + changes
    local = to_local(masked(series, in_windows(series.timestamps, planned)), zone)
    told = tuple(int(r) for r in np.asarray(releases, dtype=np.int64) + utc_offsets(np.asarray(releases), zone))
    core = dataclasses.replace(settings, local_time=(), holidays=(), withdrawn=(), widened=(),
                               horizon=local_horizon(series.end, settings.horizon, series.step, zone))
    fitted = _fit_utc(masked(local, on_days(local.timestamps, holidays)), core, told, previous)
    columns = holiday_band(fitted.timestamps, fitted.yhat, fitted.lower, fitted.upper, local, holidays)
    table_ts = series.end + series.step * np.arange(1, settings.horizon // series.step + 1, dtype=np.int64)
    yhat, lower, upper = table_at_utc(fitted.timestamps, columns, table_ts, zone)
    training = dict(fitted.training)
    if in_windows(table_ts, changes).any():
        yhat, lower, upper = clip_band(yhat, *widen_band(table_ts, yhat, lower, upper, settings.widened),
                                       tuple(training["range"]) if training.get("range") else None)
        training["widened"] = [[int(s), int(e), float(f), d] for s, e, f, d in settings.widened
                               if s <= table_ts[-1] and e > table_ts[0]]
    gone = in_windows(table_ts, settings.withdrawn)
    yhat, lower, upper = (np.where(gone, np.nan, c) for c in (yhat, lower, upper))
    if gone.any():
        training["withdrawn"] = [[int(s), int(e)] for s, e in settings.withdrawn
                                 if s <= table_ts[-1] and e > table_ts[0]]
    seen = sorted(set(holidays) & set(range(local.start // DAY, int(fitted.timestamps[-1]) // DAY + 1)))
    if seen:
        training["holidays"] = [str(np.datetime64(d, "D")) for d in seen]
    return dataclasses.replace(fitted, timestamps=table_ts, yhat=yhat, lower=lower, upper=upper,
                               data_start=series.start, data_end=series.end, training=training)


def _fit_utc(series: Series, settings: FitSettings, releases: tuple[int, ...],
             previous: Mapping[str, Any] | None = None) -> FittedSeries:
    """`fit_series` on the series' own timestamps, the time of day read from them as they are."""
    policy = band_policy(settings.sensitivity)
    classification = kept_classification(previous, series, settings.curve_type)
    kept = classification is not None
    if classification is None:
        classification = classify_for_fit(series, settings.curve_type)
        curve, weekly = classification["curve_type"], WEEK in classification["periods"]
        if settings.curve_type == "auto" and not weekly and curve not in SPARSE and weekly_effect(series):
            classification["periods"].append(WEEK)
            classification.setdefault("reasons", []).append("day-of-week effect found by the ensemble")
            classification["curve_type"] = "seasonal"
        classification["classified"] = _classified(series)
    elif classification["curve_type"] == "regime":  # its levels shape the band: found in today's history
        classification["regimes"] = [r.to_dict() for r in find_regimes(series.values, series.step)]
    curve, weekly = classification["curve_type"], WEEK in classification["periods"]
    seasonal = curve == "seasonal" or bool(classification["periods"])
    train, training = clean_training(series, seasonal, mask=curve not in UNMASKED, period=WEEK if weekly else DAY,
                                     releases=tuple(releases), settle=settings.settle, absorb=settings.absorb)
    if kept:
        training["classification"] = "kept"  # from the last fit (`kept_classification`)
    one_offs = {"constant": _one_off_excursions, "intermittent": _one_off_bursts}.get(curve)
    if one_offs is not None and (away := one_offs(train)).any():
        training["excursions"] = int(away.sum())
        train = Series(train.labels, train.timestamps, np.where(away, np.nan, train.values), train.step, train.name)
    training["stuck_after"] = stuck.stuck_after(series.timestamps, series.values, series.step)
    if curve in sustained.CURVE_TYPES:
        training["sustained"] = sustained.mean_limits(train.timestamps, train.values, train.step, policy.coverage)
    history = int(np.isfinite(train.values).sum()) * train.step
    names = choose_candidates(curve, settings, history, weekly)
    period = DAY if seasonal else 0
    stamp = classification["classified"]
    folds = backtest_folds(len(train), train.step)
    chosen = None
    if kept:
        chosen = kept_ensemble(stamp.get("ensemble"), names, policy.coverage, history, len(folds))
    table_ts = series.end + series.step * np.arange(1, settings.horizon // series.step + 1, dtype=np.int64)
    last_day = slice(folds[-1][0], None)
    if chosen is not None:
        refitted, forecast, seen = refit(train, chosen.weights, table_ts, train.timestamps[last_day])
        if set(refitted) == set(chosen.weights) \
                and _kept_ensemble_holds(train.values[last_day], train.timestamps[last_day], seen, chosen):
            weights, members, cal = chosen.weights, chosen.members, chosen.calibration
            held_out, checked = chosen.held_out, chosen.checked
            training["ensemble"] = "kept"  # members, weights and calibration from the week's backtest
        else:
            chosen = None
    if chosen is None:
        weights, members, backtest_fc, y_test, t_test = select_members(train, names)
        z = (y_test - backtest_fc.mean) / backtest_fc.scale
        cal = calibrate(z, t_test, policy.coverage, period=period, buckets=4 if seasonal else 1)
        held_out, checked = held_out_coverage(z, t_test, policy.coverage, folds[-1][1] - folds[-1][0],
                                              period=period, buckets=4 if seasonal else 1)
        refitted, forecast, seen = refit(train, weights, table_ts, train.timestamps[last_day])
        if history < 3 * DAY and seen is not None:  # one backtest fold: its points are `last_day`'s
            cal = _rescaled(cal, backtest_fc.scale[-len(seen.scale):], seen.scale)
        zn = np.empty(0)  # a member that cannot forecast the past leaves nothing to judge a later day by
        if seen is not None:
            zn = _normalised((train.values[last_day] - seen.mean) / seen.scale, train.timestamps[last_day], cal)
        stamp.pop("ensemble", None)  # a kept classification's older record: replaced, or gone
        # without residuals to judge a later day by, or with only the fallback left (every candidate
        # failed): backtested again tomorrow
        if len(zn) and set(refitted) == set(weights) and FALLBACK not in weights:
            stamp["ensemble"] = _ensemble_record(names, weights, members, cal, held_out, checked,
                                                 _residual_bulk(zn),
                                                 (float(zn.min()), float(zn.max())), history, len(folds))
    weights = refitted
    for m in members:
        m["weight"] = round(weights.get(m["name"], 0.0), 6)
    yhat, lower, upper = _band(train, forecast, cal, table_ts, policy, history)
    if curve == "insufficient":
        lower, upper = _sparse_guard(series, lower, upper)
    if curve == "noisy":
        lower, upper = _envelope(train, lower, upper)
    lower, upper = allow_reversal(lower, upper, yhat, training.get("level_shift"), series.end)
    week_unknown = not weekly and curve not in SPARSE
    if week_unknown:
        slope = daily_slope(train.timestamps, train.values) if curve == "trending" else 0.0
        unshifted = _unshifted(series, train, training.get("releases") or [])
        lower, upper = last_week_prior(lower, upper, yhat, table_ts, unshifted, slope)
    lower, upper = _span_cap(series, yhat, lower, upper)
    if week_unknown:  # after the cap: a first weekend may fall below anything the history shows
        lower, upper = first_week_priors(lower, upper, yhat, table_ts, series)
    lower, upper = recurring_excursions(lower, upper, table_ts, series)
    lower, upper = _young_envelope(train, lower, upper, history, calibrated=cal.n > 0)
    regimes = _band_regimes(classification, series) if curve == "regime" else []
    lower, upper = _recurring_levels(curve, regimes, series, lower, upper, policy.coverage)
    yhat = np.clip(yhat, lower, upper)
    if regimes:
        yhat = _off_the_edge(yhat, lower, upper, [r.centre for r in regimes])
    bounds = natural_range(series.values, f"{settings.hints} {series.name or ''}", settings.range)
    training["range"] = list(bounds)
    yhat, lower, upper = clip_band(yhat, lower, upper, bounds)
    if curve == "insufficient" and _scattered(series):  # a handful of scrapes says no range
        training["withheld"] = (f"only {series.observed} points (< {MIN_POINTS}), scattered over the history: "
                                "no band until there are more")
        yhat = lower = upper = np.full(len(yhat), np.nan)
    return FittedSeries(
        labels=dict(series.labels), step=series.step, classification=classification, members=members,
        coverage={"nominal": policy.coverage, "achieved": round(cal.achieved, 6), "n": cal.n,
                  "q_lo": cal.q_lo, "q_hi": cal.q_hi,
                  "held_out": None if held_out is None else round(held_out, 6), "held_out_n": checked},
        timestamps=table_ts, yhat=yhat, lower=lower, upper=upper,
        data_start=series.start, data_end=series.end, training=training,
    )


def walk_forward_fit(settings: FitSettings, releases: tuple[int, ...] = (),
                     memory: dict[str, dict[str, Any]] | None = None) -> Callable[[Series, int], FittedSeries]:
    """`fit_series` as a walk-forward fit function `(train, horizon)`: each training window is fitted
    for that horizon, told the `releases` up to its end (none after it) and the classification of the
    series' previous window (kept by series in `memory`, which calls may share), as the daemon's
    daily retrain is."""
    known = tuple(sorted(int(r) for r in releases))
    memory = {} if memory is None else memory

    def fit(train: Series, horizon: int) -> FittedSeries:
        told = tuple(r for r in known if r <= train.end)
        key = f"{train.name}{train.key}"
        fitted = fit_series(train, dataclasses.replace(settings, horizon=int(horizon)), told, memory.get(key))
        memory[key] = json_safe(fitted.classification)  # as the store gives it back to the next retrain
        return fitted
    return fit


def _scattered(series: Series) -> bool:
    """Too few points to say a range: fewer than `MIN_YOUNG`, or fewer than `MIN_POINTS` that are
    less than half of the grid they span (a handful of scrapes over days). A young dense series has
    its band from `MIN_YOUNG` points on (a day of hourly points is dense)."""
    ok = np.flatnonzero(np.isfinite(series.values))
    if series.observed >= MIN_POINTS:
        return False
    return len(ok) < MIN_YOUNG or len(ok) < 0.5 * (ok[-1] - ok[0] + 1)


def _one_off_excursions(train: Series) -> np.ndarray:
    """A constant gauge's excursions from its value (`training.excursions`) but those that recur (on
    either side, `training.recurring`): a spike every few hours is the gauge's nature, an afternoon
    at another value once an incident."""
    away = excursions(train.values, train.step)
    if not away.any():
        return away
    offset = train.values - float(np.nanmedian(train.values))
    return away & ~recurring(away, offset, train.timestamps)


def _one_off_bursts(train: Series) -> np.ndarray:
    """A sparse series' episodes above its floor far longer than its usual blips, once
    (`training.one_off_episodes`): an afternoon of errors is an incident, masked from training so it
    widens neither the model's band nor the trailing mean's limits."""
    above = np.isfinite(train.values) & (train.values > _finite_min(train.values))
    return one_off_episodes(above, train.timestamps, train.step)


def _finite_min(values: np.ndarray) -> float:
    """The smallest finite value (0 without any): a sparse series' floor, whatever infinities it holds."""
    finite = values[np.isfinite(values)]
    return float(finite.min()) if len(finite) else 0.0


def _band_regimes(classification: dict[str, Any], series: Series) -> list[Regime]:
    """The levels a regime curve's band spans: its regimes (found now for a configured curve type)
    and, if it is none of them, the level it has held for the last whole day (`regimes.current_level`),
    lowest first; [] without regimes."""
    found = [Regime(**r) for r in classification.get("regimes", ())]
    regimes = found or find_regimes(series.values, series.step)  # a configured curve type: look now
    now = current_level(series.values, series.step, DAY) if regimes else None
    if now is not None and not any(r.low <= now.centre <= r.high for r in regimes):
        regimes = sorted([*regimes, now], key=lambda r: r.centre)
    return regimes


def _recurring_levels(curve: str, regimes: list[Regime], series: Series, lower: np.ndarray,
                      upper: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """What the history shows again and again is normal, whatever its size (`smartmetrics.engine.regimes`):
    a regime curve's band reaches every level of `regimes` (`_band_regimes`), a sparse curve's upper
    edge its usual blips (a constant gauge's, where they recur: `_recurring_blips`)."""
    if curve == "regime":
        return regime_band(lower, upper, series.values, series.timestamps, regimes, coverage)
    if curve == "intermittent":
        return lower, blip_band(upper, series.values, coverage, floor=_finite_min(series.values),
                                timestamps=series.timestamps, step=series.step)
    if curve == "constant":
        return lower, _recurring_blips(upper, series, coverage)
    return lower, upper


def _off_the_edge(yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, centres: list[float]) -> np.ndarray:
    """A regime curve's yhat where the models put it on (or past) an edge of the band its regimes
    span: the regime centre nearest that edge inside the band (else the band's middle). On the edge,
    the anomaly score would divide a breach of any size by a half-band of zero.

    >>> _off_the_edge(np.array([5.0, 12.0]), np.full(2, 5.0), np.full(2, 90.0), [10.0, 80.0]).tolist()
    [10.0, 12.0]
    """
    edge = (upper > lower) & ((yhat <= lower) | (yhat >= upper))
    if not edge.any():
        return yhat
    out = yhat.copy()
    for i in np.flatnonzero(edge):
        inside = [c for c in centres if lower[i] < c < upper[i]]
        middle = 0.5 * (lower[i] + upper[i])
        out[i] = min(inside, key=lambda c: abs(c - yhat[i])) if inside else middle
    return out


def _recurring_blips(upper: np.ndarray, series: Series, coverage: float) -> np.ndarray:
    """A constant gauge's upper edge reaches the blips above its value that recur (`training.recurring`:
    an error ratio resting at zero with a blip on most days, too few blips to be called intermittent),
    as a sparse curve's does (`blip_band`), once they come at the rate of a habit (`habit_episodes`);
    a few one-offs stay outside. Blips less than
    `training.BLIP_GAP` apart are one episode (`training.episodes`): an incident's burst of blips is
    one incident, not a habit."""
    ok = np.isfinite(series.values)
    if not ok.any():
        return upper
    mode = resting_value(series.values[ok])
    spans = episodes(ok & (series.values > mode), series.step)
    need = habit_episodes(float(series.timestamps[-1] - series.timestamps[0]) / DAY)
    if not recurring(spans, spans.astype(np.float64), series.timestamps, need).any():
        return upper
    return blip_band(upper, series.values, coverage, floor=mode, timestamps=series.timestamps, step=series.step)


def _unshifted(series: Series, train: Series, releases: list[dict]) -> Series:
    """The raw series with the points cleaning masked as anomalies blanked, but its levels as they
    were: a weekend that looked like a level shift must still look like a weekend. Only the shifts of
    known releases are undone, as in training."""
    values = relevel(series.timestamps, series.values, releases)
    pos = np.searchsorted(series.timestamps, train.timestamps)
    values[pos[np.isnan(train.values)]] = np.nan
    return Series(series.labels, series.timestamps, values, series.step, series.name)


def _span_cap(series: Series, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """No half-band wider than `SPAN_CAP` spans of the raw history, whatever the priors added."""
    y = series.values[np.isfinite(series.values)]
    if not len(y):
        return lower, upper
    bulk_lo, bulk_hi = bulk = _bulk_range(y)
    cap = _half_band_cap(bulk)
    if cap <= 0:
        return lower, upper
    # the cap stops runaway widths; it never cuts into the 0.5%..99.5% the history holds (a sparse
    # counter's 0 stays inside however small its yhat and its span)
    return np.maximum(lower, np.minimum(yhat - cap, bulk_lo)), np.minimum(upper, np.maximum(yhat + cap, bulk_hi))


def _bulk_range(y: np.ndarray) -> tuple[float, float]:
    """The 0.5% and 99.5% quantiles of the finite values `y`."""
    lo, hi = np.quantile(y, [0.005, 0.995])
    return float(lo), float(hi)


def _half_band_cap(bulk: tuple[float, float]) -> float:
    """`SPAN_CAP` spans of the history's bulk (`_bulk_range`)."""
    return SPAN_CAP * (bulk[1] - bulk[0])


def _envelope(train: Series, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A noisy series' band reaches at least as far as its history's 0.1%..99.9% quantiles: its
    normal range is its whole distribution, whatever shape a profile fitted to its noise has."""
    y = train.values[np.isfinite(train.values)]
    if len(y) < 10:
        return lower, upper
    lo, hi = np.quantile(y, [0.001, 0.999])
    return np.minimum(lower, lo), np.maximum(upper, hi)


YOUNG = 5 * DAY  # below this much history, a level is not yet tied to its time of day


def _young_envelope(series: Series, lower: np.ndarray, upper: np.ndarray, history: int,
                    calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A young fit (two to five days) covers what at least two of its days reached, at any hour: a few
    days cannot tell a level's time of day from chance, while a one-day incident stays outside. Pass
    the cleaned training history: a release or level shift already moved the days before it. Days
    that agree on one shape (`_days_agree`) lift it, unless the band was calibrated on no residual at
    all (the backtest's day was a scrape gap): its width then says nothing."""
    if not 2 * DAY <= history < YOUNG or (calibrated and _days_agree(series)):
        return lower, upper
    ok = np.isfinite(series.values)
    day = (series.end - series.timestamps[ok]) // DAY  # 0: the last 24 hours
    values = series.values[ok]
    if len(values) == 0 or day.max() < 1:
        return lower, upper
    n = int(day.max()) + 1
    highs, lows = np.full(n, -np.inf), np.full(n, np.inf)
    np.maximum.at(highs, day, values)
    np.minimum.at(lows, day, values)
    return np.minimum(lower, np.sort(lows)[1]), np.maximum(upper, np.sort(highs)[-2])


AGREE = 0.2  # days agree when their hours differ by at most this share of the daily shape


def _days_agree(series: Series) -> bool:
    """Whether the whole days seen have one daily shape: at every hour of the day, the days' means
    differ by at most `AGREE` of how far the mean day rises and falls. Then a level is tied to its time
    of day from the first days, and a young band need not cover every hour with what any hour reached
    (a dip at the peak hour is as plain on the third day as on the tenth). One hour that differs (a
    nightly job that ran at one on Monday and at three on Tuesday, a spike on two of three days) is
    enough to keep the envelope: its time of day is not known yet.

    >>> t = np.arange(0, 3 * DAY, 300)
    >>> def days(shift):  # a sine a day, the last day's moved by `shift` seconds
    ...     return Series({}, t, 10 + 5 * np.sin(2 * np.pi * (t + shift * (t >= 2 * DAY)) / DAY), 300)
    >>> _days_agree(days(0)), _days_agree(days(600)), _days_agree(days(8 * 3600))
    (True, True, False)
    >>> job = days(0)  # and a job of an hour at 02:00 on the second day only
    >>> _days_agree(Series({}, t, job.values + 20 * ((t >= DAY + 7200) & (t < DAY + 10800)), 300))
    False
    >>> late = days(8 * 3600).values.copy()  # the late day with an hour missing: still late
    >>> late[(t >= 2 * DAY + 12 * 3600) & (t < 2 * DAY + 13 * 3600)] = np.nan
    >>> _days_agree(Series({}, t, late, 300))
    False

    Each hour is compared across the days that have samples in it, and every hour must be seen on two
    of them: a day missing an hour still speaks for its other hours.
    """
    if series.step > 3600:
        return False
    t, v = series.timestamps, series.values
    ok = np.isfinite(v)
    if not ok.any():
        return False
    day = (series.end - t[ok]) // DAY
    whole = day < (series.end - series.timestamps[0] + series.step) // DAY  # the first day may be partial
    hour = (t[ok] % DAY) // 3600
    days = int(day.max()) + 1
    sums, counts = np.zeros((days, 24)), np.zeros((days, 24))
    np.add.at(sums, (day[whole], hour[whole]), v[ok][whole])
    np.add.at(counts, (day[whole], hour[whole]), 1)
    if ((counts > 0).sum(axis=0) < 2).any():
        return False
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    shape = float(np.ptp(np.nanmean(means, axis=0)))
    differ = float(np.max(np.nanmax(means, axis=0) - np.nanmin(means, axis=0)))
    return shape > 0 and differ <= AGREE * shape


def _sparse_guard(series: Series, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A band for a series with too few samples to learn from: everything seen (the raw history: too
    little of it to tell an incident from its nature), with as much again (or half the typical level)
    on either side; it alerts only on values far outside the history."""
    y = series.values[np.isfinite(series.values)]
    if len(y) == 0:
        return lower, upper
    margin = max(float(np.ptp(y)), 0.5 * abs(float(np.median(y))))
    low = float(y.min()) - margin
    low = max(low, 0.0) if y.min() >= 0 else low
    return np.minimum(lower, low), np.maximum(upper, float(y.max()) + margin)


def _band(train: Series, forecast: Forecast, cal: Calibration, ts: np.ndarray, policy, history: int):
    """Apply calibration offsets, cold-start widening, minimum widths and the natural floor."""
    y = train.values[np.isfinite(train.values)]
    factors = cal.factors_at(ts) * cold_start_widening(history)
    min_half = np.maximum(policy.min_rel * np.abs(forecast.mean), policy.min_spread * _spread(y))
    floor = 0.0 if len(y) and y.min() >= 0 else None
    yhat, lower, upper = apply_band(forecast.mean, forecast.scale, cal.q_lo * factors, cal.q_hi * factors,
                                    min_half, floor)
    if len(y):  # a half-band wider than the history's whole span can never alert on anything
        cap = np.maximum(_half_band_cap(_bulk_range(y)), min_half)
        upper, lower = np.minimum(upper, yhat + cap), np.maximum(lower, yhat - cap)
    if len(y) and history < 2 * DAY:  # too short to know a day's shape: cover all that has been seen
        # (cleaning has masked its incidents; a spike the one day showed may be its usual one)
        lo_q, hi_q = float(np.min(y)), float(np.max(y))
        margin = 0.1 * max(hi_q - lo_q, 0.0)
        lower, upper = np.minimum(lower, lo_q - margin), np.maximum(upper, hi_q + margin)
        lower = lower if floor is None else np.maximum(lower, floor)
    if floor is not None and np.mean(y <= floor) > (1 - policy.coverage) / 2:
        lower = np.full_like(lower, floor)  # the floor itself is a normal value (sparse counters)
    return yhat, lower, upper
