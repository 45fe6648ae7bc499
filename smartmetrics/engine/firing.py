"""What the generated Prometheus rules fire, replayed point by point: one alert semantics for all.

The backtest, `evaluate`, `tune`, the demo and the notebook count alerts with this module, and the
rules (`smartmetrics.render.rules`, `stuck_rules`, `sustained_rules`) are rendered from the same `AlertRules`,
so a figure quoted from a replay is what Prometheus would have fired on the same samples. The replay
assumes Prometheus evaluates the rules once per sample (evaluation interval = the baseline's step,
aligned with the samples); `tests/render/test_firing_promtool.py` feeds replayed curves to `promtool test
rules` and checks that every alert fires at exactly the points the replay says.

Per point, the three alerts of a baseline:
- `anomaly`: the rule's score (each side's deviation over its own half-band, a zero-width side
  clamped to `EPSILON`) above the threshold, on the side `direction` allows, the deviation at least
  `min_abs_deviation` and `min_rel_deviation * |yhat|`; then Prometheus' `for` (the condition holds
  at every evaluation for `for` seconds: `for / step + 1` points in a row) and `keep_firing_for`
  (still firing for `keep_firing_for / step` points after the condition clears; a point meeting the
  condition meanwhile continues the same alert).
- `stuck`: the value has not changed for the rule's window (the stored `stuck_after`, rounded up to a
  minute), no `for`, no `keep_firing_for`.
- `sustained`: the trailing mean beyond its stored limits on an allowed side, no `for`, the anomaly
  alert's `keep_firing_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from smartmetrics.engine.bands import band_policy

EPSILON = 1e-9
"""A zero-width half-band is clamped to this, so a value on it scores 0 and one beyond scores huge."""
KINDS = ("anomaly", "stuck", "sustained")
"""The alerts of a baseline, in the order the rule file lists them."""


@dataclass(frozen=True)
class AlertRules:
    """The alerting part of a baseline, as the generated rules apply it."""

    threshold: float = 1.0
    for_seconds: float | None = None  # None: the sensitivity's (`for_points` - 1 steps)
    keep_seconds: float = 0.0
    direction: str = "both"
    min_abs_deviation: float = 0.0
    min_rel_deviation: float = 0.0
    stuck: bool = True
    sustained: bool = True
    default_points: int = 1  # `for` in points when `for_seconds` is None

    def __post_init__(self) -> None:
        if self.direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be both, up or down, not {self.direction!r}")

    @classmethod
    def of_sensitivity(cls, sensitivity: str | float, *, for_points: int | None = None, direction: str = "both",
                       min_abs_deviation: float = 0.0, min_rel_deviation: float = 0.0) -> AlertRules:
        """The rules a baseline with this sensitivity and no alert overrides gets (`for_points` overrides `for`)."""
        policy = band_policy(sensitivity)
        return cls(threshold=policy.threshold, for_seconds=None, keep_seconds=float(policy.keep_firing_for),
                   direction=direction, min_abs_deviation=min_abs_deviation, min_rel_deviation=min_rel_deviation,
                   default_points=int(for_points or policy.for_points))

    @classmethod
    def of_baseline(cls, baseline) -> AlertRules:
        """The rules `smartmetrics rules` renders for a configured baseline (`smartmetrics.config.Baseline`)."""
        alert, policy = baseline.alert, band_policy(baseline.sensitivity)
        return cls(threshold=policy.threshold, for_seconds=for_seconds(baseline),
                   keep_seconds=float(policy.keep_firing_for), direction=alert.direction,
                   min_abs_deviation=alert.min_abs_deviation, min_rel_deviation=alert.min_rel_deviation,
                   stuck=alert.stuck, sustained=alert.sustained)

    def with_sensitivity(self, sensitivity: str | float) -> AlertRules:
        """These rules with another sensitivity's score threshold and `keep_firing_for` (`for` kept)."""
        policy = band_policy(sensitivity)
        return replace(self, threshold=policy.threshold, keep_seconds=float(policy.keep_firing_for))

    def for_points(self, step: int) -> int:
        """Points in a row the condition must hold before the alert fires, at one evaluation per step.

        >>> AlertRules(for_seconds=600).for_points(300), AlertRules(for_seconds=0).for_points(300)
        (3, 1)
        >>> AlertRules(for_seconds=None, default_points=2).for_points(60)
        2
        """
        if self.for_seconds is None:
            return max(1, self.default_points)
        return 1 + math.ceil(self.for_seconds / max(int(step), 1))

    def keep_points(self, step: int) -> int:
        """Points after the condition clears that the alert still fires (`keep_firing_for`).

        >>> AlertRules(keep_seconds=7200).keep_points(300), AlertRules(keep_seconds=7200).keep_points(3600)
        (24, 2)
        """
        return math.ceil(self.keep_seconds / max(int(step), 1))


def for_seconds(baseline) -> float:
    """The `for` of a baseline's anomaly alert: as configured, else its sensitivity's (`for_points` - 1 steps).

    >>> from types import SimpleNamespace as N
    >>> for_seconds(N(alert=N(for_=None), sensitivity="low", step=300)), for_seconds(N(alert=N(for_=900.0)))
    (300.0, 900.0)
    """
    if baseline.alert.for_ is not None:
        return float(baseline.alert.for_)
    return float((band_policy(baseline.sensitivity).for_points - 1) * int(baseline.step))


def rule_score(values: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """`smartmetrics:anomaly_score` as the recording rule computes it, operation for operation (so the
    same float64 results): `clamp_min((v - yhat) / clamp_min(upper - yhat, eps), 0) + clamp_min((yhat - v)
    / clamp_min(yhat - lower, eps), 0)`; NaN where any input is missing (the vector match finds nothing).

    >>> rule_score(np.array([10.0, 12.0, 14.0, 7.0]), np.full(4, 10.0), np.full(4, 9.0), np.full(4, 12.0)).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    v, y, lo, hi = (np.asarray(a, dtype=np.float64) for a in (values, yhat, lower, upper))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        above = np.maximum((v - y) / np.maximum(hi - y, EPSILON), 0.0)
        below = np.maximum((y - v) / np.maximum(y - lo, EPSILON), 0.0)
        score = above + below
    missing = ~(np.isfinite(v) & np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi))
    return np.where(missing, np.nan, score)


def anomaly_condition(values: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                      rules: AlertRules) -> np.ndarray:
    """Points where the anomaly alert's expression holds (before `for`), as `rules.alert_condition` renders it.

    >>> r = AlertRules(threshold=1.3, direction="up", min_abs_deviation=0.5)
    >>> v = np.array([10.0, 12.4, 14.0, 13.0, 5.0])
    >>> anomaly_condition(v, np.full(5, 12.0), np.full(5, 11.0), np.full(5, 12.1), r).tolist()
    [False, False, True, True, False]
    """
    v, y = np.asarray(values, dtype=np.float64), np.asarray(yhat, dtype=np.float64)
    score = rule_score(v, y, lower, upper)
    with np.errstate(invalid="ignore"):
        out = np.nan_to_num(score, nan=-np.inf) > rules.threshold
        if rules.direction == "up":
            out &= v > y
        elif rules.direction == "down":
            out &= v < y
        deviation = np.abs(v - y)
        if rules.min_abs_deviation > 0:
            out &= deviation >= rules.min_abs_deviation
        if rules.min_rel_deviation > 0:
            out &= deviation >= rules.min_rel_deviation * np.abs(y)
    return out


def firing_and_onsets(condition: np.ndarray, for_points: int, keep_points: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' alert state per evaluation: `firing` once the condition has held for `for_points`
    evaluations in a row, and for `keep_points` evaluations after it clears (the condition holding
    meanwhile continues the same alert); `alert` where firing starts.

    >>> f, a = firing_and_onsets(np.array([1, 1, 1, 0, 1, 1], dtype=bool), 2)
    >>> f.astype(int).tolist(), a.astype(int).tolist()
    ([0, 1, 1, 0, 0, 1], [0, 1, 0, 0, 0, 1])
    >>> f, a = firing_and_onsets(np.array([1, 0, 0, 1, 0, 0, 0, 1], dtype=bool), 1, keep_points=2)
    >>> f.astype(int).tolist(), a.astype(int).tolist()
    ([1, 1, 1, 1, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0, 0, 1])
    """
    need, keep = max(int(for_points), 1), max(int(keep_points), 0)
    firing = np.zeros(len(condition), dtype=bool)
    run = quiet = 0
    active = False
    for i, holds in enumerate(condition):
        run = run + 1 if holds else 0
        if active and not holds:
            quiet += 1
            active = quiet <= keep
        elif holds and (active or run >= need):
            active, quiet = True, 0
        firing[i] = active
    return firing, onsets(firing)


def onsets(firing: np.ndarray) -> np.ndarray:
    """Where firing starts: a firing point whose predecessor was not firing.

    >>> onsets(np.array([1, 1, 0, 1], dtype=bool)).astype(int).tolist()
    [1, 0, 0, 1]
    """
    firing = np.asarray(firing, dtype=bool)
    return firing & ~np.concatenate(([False], firing[:-1]))


def stuck_window(stuck_after: np.ndarray) -> np.ndarray:
    """The stuck rule's window per point: the stored `stuck_after` rounded up to a whole minute (NaN: none).

    >>> stuck_window(np.array([1500.0, 1801.0, np.nan, 0.0])).tolist()
    [1500.0, 1860.0, nan, nan]
    """
    s = np.asarray(stuck_after, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(s) & (s > 0), np.ceil(s / 60.0) * 60.0, np.nan)


@dataclass(frozen=True)
class Fired:
    """Per alert kind, the points where it fires; `firing` and `alert` over all of them."""

    by_kind: dict[str, np.ndarray]

    @property
    def firing(self) -> np.ndarray:
        out = np.zeros(len(next(iter(self.by_kind.values()))), dtype=bool)
        for fired in self.by_kind.values():
            out |= fired
        return out

    @property
    def alert(self) -> np.ndarray:
        return onsets(self.firing)

    def names(self) -> list[str]:
        """Per point, the kinds firing there, joined by `+` (empty where none).

        >>> Fired({"anomaly": np.array([1, 1, 0], bool), "stuck": np.array([0, 1, 0], bool)}).names()
        ['anomaly', 'anomaly+stuck', '']
        """
        kinds = list(self.by_kind)
        stacked = np.vstack([self.by_kind[k] for k in kinds])
        return ["+".join(k for k, on in zip(kinds, column) if on) for column in stacked.T]

    def onsets_of(self, kind: str) -> np.ndarray:
        """Where one kind's alert starts (Prometheus notifies each alert on its own)."""
        return onsets(self.by_kind[kind])
