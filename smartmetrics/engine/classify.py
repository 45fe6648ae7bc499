"""Curve type of a series, with its periods, a confidence and the features that decided it.

Rules, checked in order, each on a feature from `smartmetrics.engine.features` against a threshold chosen on
the synthetic corpus (`smartmetrics.evaluation.synth`), never on benchmark data:

1. `insufficient` — less than a day of history, or too few finite points.
2. `intermittent` — mostly zeros with many separate non-zero bursts (Syntetos-Boylan ADI >= 1.32).
3. `constant` — one value holds almost every point.
4. `seasonal` — a cross-validated seasonal strength at or above the period threshold.
5. `regime` — the values switch between levels far apart, each entered again and again (batch jobs
   on an idle GPU, an autoscaler's steps, on/off load; `smartmetrics.engine.regimes`).
6. `level_shift` — a step fit explains the level far better than a line.
7. `trending` — a line explains the level, and its rise is large against the noise.
8. `noisy` — the remainder is large relative to the level.
9. `stable` — none of the above: noise around a level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.features import ADI_LIMIT, CV2_LIMIT, compute_features
from smartmetrics.engine.periods import PERIOD_MIN_STRENGTH, WEEK
from smartmetrics.engine.regimes import MIN_EPISODES, Regime, describe, find_regimes
from smartmetrics.engine.series import Series

MIN_HISTORY_DAYS = 1.0
MIN_POINTS = 48
INTERMITTENT_ZEROS, INTERMITTENT_RUNS = 0.3, 8
CONSTANT_SHARE, CONSTANT_EPISODES_SHARE, CONSTANT_EPISODES = 0.9, 0.6, 6
SHIFT_RATIO, SHIFT_MIN_STRENGTH, SHIFT_MIN_SIZE = 0.35, 0.5, 5.0
TREND_MIN_STRENGTH, TREND_MIN_SIZE = 0.5, 5.0
NOISY_RELATIVE = 0.3
WEEKLY_MARGIN = 0.03  # a weekly-only cycle yields to a step fit only when the step fits clearly better

KEY_FEATURES = (
    "history_days", "seasonal_daily", "seasonal_weekly", "trend_strength", "shift_strength",
    "relative_noise", "zero_share", "flat_share",
)


@dataclass(frozen=True)
class Classification:
    """A series' curve type, its periods (seconds, strongest first), confidence in 0..1, and why."""

    curve_type: str
    periods: tuple[int, ...] = ()
    confidence: float = 1.0
    features: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    regimes: tuple[Regime, ...] = ()  # the recurring levels of a `regime` curve, lowest first

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (non-finite feature values become None)."""
        out = {
            "curve_type": self.curve_type,
            "periods": list(self.periods),
            "confidence": round(float(self.confidence), 4),
            "features": {k: (float(v) if math.isfinite(v) else None) for k, v in sorted(self.features.items())},
            "reasons": list(self.reasons),
        }
        if self.regimes:
            out["regimes"] = [r.to_dict() for r in self.regimes]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Classification:
        """The inverse of `to_dict`."""
        feats = {k: (math.nan if v is None else float(v)) for k, v in data.get("features", {}).items()}
        return cls(str(data["curve_type"]), tuple(int(p) for p in data.get("periods", ())),
                   float(data.get("confidence", 1.0)), feats, tuple(str(r) for r in data.get("reasons", ())),
                   tuple(Regime(**r) for r in data.get("regimes", ())))


def format_periods(periods: tuple[int, ...]) -> str:
    """Periods written as durations, strongest first.

    >>> format_periods((86400, 604800, 5400))
    '1d, 1w, 1h30m'
    """
    return ", ".join("1w" if p == WEEK else format_duration(p) for p in periods) or "-"


def _margin(value: float, threshold: float, scale: float) -> float:
    """Confidence from the distance to a threshold: 0.5 at it, towards 1 as the distance grows."""
    return 0.5 + 0.5 * math.tanh(abs(value - threshold) / scale)


def _strongest_season(f: dict[str, float]) -> tuple[str, float]:
    names = ("seasonal_daily", "seasonal_weekly", "seasonal_hourly", "seasonal_other")
    name = max(names, key=lambda n: f.get(n, 0.0))
    return name, f.get(name, 0.0)


def decide(f: dict[str, float], periods: tuple[int, ...]) -> tuple[str, float, tuple[str, ...]]:
    """The rules above applied to a feature dict: (curve type, confidence, reasons)."""
    if f["history_days"] < MIN_HISTORY_DAYS:
        return "insufficient", 1.0, (f"history {f['history_days']:.2f} days < {MIN_HISTORY_DAYS:g} day",)
    if f["finite_points"] < MIN_POINTS:
        return "insufficient", 1.0, (f"only {f['finite_points']:.0f} finite points < {MIN_POINTS}",)
    if f["zero_share"] >= INTERMITTENT_ZEROS and f["nonzero_runs"] >= INTERMITTENT_RUNS \
            and f["adi"] >= ADI_LIMIT:
        kind = "lumpy" if f["cv2"] >= CV2_LIMIT else "intermittent"
        return "intermittent", _margin(f["zero_share"], INTERMITTENT_ZEROS, 0.2), (
            f"zero share {f['zero_share']:.2f} >= {INTERMITTENT_ZEROS}",
            f"ADI {f['adi']:.2f} >= {ADI_LIMIT}, CV² {f['cv2']:.2f} (Syntetos-Boylan: {kind})",
        )
    if f["flat_share"] >= CONSTANT_SHARE:
        return "constant", _margin(f["flat_share"], CONSTANT_SHARE, 0.05), (
            f"one value holds {f['flat_share']:.1%} of points >= {CONSTANT_SHARE:.0%}",)
    if f["flat_share"] >= CONSTANT_EPISODES_SHARE and f["off_mode_runs"] <= CONSTANT_EPISODES:
        return "constant", _margin(f["flat_share"], CONSTANT_EPISODES_SHARE, 0.1), (
            f"one value holds {f['flat_share']:.1%} of points, left only {f['off_mode_runs']:.0f} times "
            f"(<= {CONSTANT_EPISODES})",)
    name, strength = _strongest_season(f)
    if periods == (WEEK,) and _is_level_shift(f) and f["shift_strength"] >= strength + WEEKLY_MARGIN:
        return "level_shift", _margin(f["shift_strength"], strength, 0.1), (
            f"step fit R² {f['shift_strength']:.2f} >= weekly seasonal strength {strength:.2f}: "
            "two weeks cannot tell a weekly cycle from deploys",
            f"largest jump {f['shift_size']:.1f} noise sd >= {SHIFT_MIN_SIZE:g}",
        )
    if periods and strength >= PERIOD_MIN_STRENGTH:
        return "seasonal", _margin(strength, PERIOD_MIN_STRENGTH, 0.2), (
            f"{name.removeprefix('seasonal_')} seasonal strength {strength:.2f} >= {PERIOD_MIN_STRENGTH}",
            f"periods {format_periods(periods)}",
        )
    if f.get("regimes", 0) >= 2:
        return "regime", _margin(f["regime_visits"], MIN_EPISODES - 0.5, 3.0), (
            f"{f['regimes']:.0f} levels, each entered {f['regime_visits']:.0f}+ times (>= {MIN_EPISODES})",
            f"strongest seasonal strength {strength:.2f} < {PERIOD_MIN_STRENGTH}",
        )
    return _decide_level(f, name, strength)


def _is_level_shift(f: dict[str, float]) -> bool:
    """A step fit explains the level well, far better than a line, with a jump large against the noise."""
    unexplained_step, unexplained_line = 1 - f["shift_strength"], 1 - f["trend_strength"]
    return f["shift_strength"] >= SHIFT_MIN_STRENGTH and f["shift_size"] >= SHIFT_MIN_SIZE \
        and unexplained_step <= SHIFT_RATIO * unexplained_line


def _decide_level(f: dict[str, float], season: str, strength: float) -> tuple[str, float, tuple[str, ...]]:
    """The non-seasonal rules: level shift, trend, noisy, stable."""
    if _is_level_shift(f):
        return "level_shift", _margin(f["shift_strength"], SHIFT_MIN_STRENGTH, 0.2), (
            f"step fit R² {f['shift_strength']:.2f} vs line R² {f['trend_strength']:.2f}",
            f"largest jump {f['shift_size']:.1f} noise sd >= {SHIFT_MIN_SIZE:g}",
        )
    if f["trend_strength"] >= TREND_MIN_STRENGTH and f["trend_size"] >= TREND_MIN_SIZE:
        return "trending", _margin(f["trend_strength"], TREND_MIN_STRENGTH, 0.2), (
            f"trend strength {f['trend_strength']:.2f} >= {TREND_MIN_STRENGTH}",
            f"rise over the window {f['trend_size']:.1f} noise sd >= {TREND_MIN_SIZE:g}",
        )
    not_seasonal = f"strongest seasonal strength {strength:.2f} ({season.removeprefix('seasonal_')}) " \
                   f"< {PERIOD_MIN_STRENGTH}"
    if f["relative_noise"] >= NOISY_RELATIVE:
        return "noisy", _margin(f["relative_noise"], NOISY_RELATIVE, 0.15), (
            f"remainder sd / level {f['relative_noise']:.2f} >= {NOISY_RELATIVE}", not_seasonal)
    confidence = min(_margin(f["relative_noise"], NOISY_RELATIVE, 0.15),
                     _margin(strength, PERIOD_MIN_STRENGTH, 0.2),
                     _margin(f["trend_strength"], TREND_MIN_STRENGTH, 0.2))
    return "stable", confidence, (
        f"remainder sd / level {f['relative_noise']:.2f} < {NOISY_RELATIVE}", not_seasonal,
        f"trend strength {f['trend_strength']:.2f}, step fit R² {f['shift_strength']:.2f}",
    )


def classify_values(values: np.ndarray, step: int) -> Classification:
    """Classify raw grid values (NaN = gap) at `step` seconds."""
    feats = compute_features(values, step)
    regimes = find_regimes(np.asarray(values, dtype=np.float64), step)
    feats.values["regimes"] = float(len(regimes))
    feats.values["regime_visits"] = float(min((r.episodes for r in regimes), default=0))
    curve_type, confidence, reasons = decide(feats.values, feats.periods)
    periods = feats.periods if curve_type == "seasonal" else ()
    if curve_type != "regime":
        return Classification(curve_type, periods, float(confidence), feats.values, reasons)
    return Classification(curve_type, periods, float(confidence), feats.values, (*reasons, describe(regimes)),
                          tuple(regimes))


def classify_series(series: Series) -> Classification:
    """Curve type, periods, confidence and reasons for one `Series`."""
    return classify_values(series.values, series.step)
