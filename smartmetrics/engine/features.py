"""Cheap robust features of one series, the evidence the classifier decides from.

Periods and seasonal strength come from `smartmetrics.engine.periods`; here are the rest: history length,
intermittency (share of zeros, ADI and CV² against the Syntetos-Boylan thresholds), flatness and
discreteness, trend and level-shift evidence (a line against a binary-segmentation step fit on hourly
medians), noise and spikiness of the remainder. NaN gaps are skipped or interpolated; incidents are
kept out by medians, trimmed variances and robust R².
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smartmetrics.engine.periods import DAY, HOUR, detect_seasonality, working_grid
from smartmetrics.engine.robust import block_mean, fill_gaps, robust_sd, trimmed_var

ADI_LIMIT, CV2_LIMIT = 1.32, 0.49  # Syntetos & Boylan (2005) demand-pattern thresholds
MIN_SEGMENT = 2.25 * DAY  # a new level must hold 2+ days: incidents and weekend dips cannot pose as one
MIN_SEGMENT_SHARE = 0.25  # ... or a quarter of a shorter history (at least half a day)


@dataclass(frozen=True)
class Features:
    """Detected periods (seconds, strongest first) and named scalar features."""

    periods: tuple[int, ...]
    values: dict[str, float] = field(default_factory=dict)


def intermittency(values: np.ndarray) -> dict[str, float]:
    """Share of zeros, ADI (mean interval between non-zero points), CV² of non-zero sizes, and the number
    of non-zero runs, over the finite values.

    >>> f = intermittency(np.array([0, 0, 3, 0, 0, 0, 3, 0, 0, 3.0]))
    >>> f["adi"], f["cv2"], f["nonzero_runs"]
    (3.5, 0.0, 3.0)
    """
    finite = values[np.isfinite(values)]
    nonzero = np.flatnonzero(finite != 0)
    out = {"zero_share": float(np.mean(finite == 0)) if len(finite) else 0.0, "adi": 1.0, "cv2": 0.0,
           "nonzero_runs": 0.0}
    if len(nonzero) >= 2:
        out["adi"] = float(np.mean(np.diff(nonzero)))
        sizes = finite[nonzero]
        out["cv2"] = float((np.std(sizes) / np.mean(np.abs(sizes))) ** 2)
    if len(nonzero):
        out["nonzero_runs"] = float(1 + np.sum(np.diff(nonzero) > 1))
    return out


def value_shape(values: np.ndarray) -> dict[str, float]:
    """Flatness (share of the most common value), the number of runs away from it, and discreteness
    (distinct values per point).

    >>> value_shape(np.array([3, 3, 4, 4, 3, 3, 3, 5, 3.0]))["off_mode_runs"]
    2.0
    """
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"flat_share": 0.0, "distinct_share": 0.0, "off_mode_runs": 0.0}
    distinct, counts = np.unique(finite, return_counts=True)
    off = np.r_[False, finite != distinct[np.argmax(counts)], False].astype(np.int8)
    return {"flat_share": float(counts.max() / len(finite)), "distinct_share": float(len(counts) / len(finite)),
            "off_mode_runs": float(np.sum(np.diff(off) == 1))}


def _robust_r2(y: np.ndarray, fitted: np.ndarray) -> float:
    """1 - trimmed variance of the residual over trimmed variance of the data: incidents barely count."""
    base = trimmed_var(y)
    return 0.0 if base == 0 else float(max(0.0, 1.0 - trimmed_var(y - fitted) / base))


def step_fit(y: np.ndarray, min_seg: int, splits: int = 3) -> tuple[np.ndarray, float]:
    """Piecewise-constant fit by binary segmentation (each split the largest drop in squared error, every
    segment at least `min_seg` long) and the largest jump between neighbouring segment means.

    >>> fit, jump = step_fit(np.r_[np.zeros(30), np.ones(30) * 5], 10)
    >>> float(jump), float(fit[0]), float(fit[-1])
    (5.0, 0.0, 5.0)
    """
    cuts = [0, len(y)]
    for _ in range(splits):
        best = (0.0, -1)
        for a, b in zip(cuts[:-1], cuts[1:]):
            seg = y[a:b]
            m = len(seg)
            if m < 2 * min_seg:
                continue
            k = np.arange(min_seg, m - min_seg + 1)
            csum = np.cumsum(seg)
            left, total = csum[k - 1], csum[-1]
            gain = left**2 / k + (total - left) ** 2 / (m - k) - total**2 / m
            i = int(np.argmax(gain))
            if gain[i] > best[0]:
                best = (float(gain[i]), a + int(k[i]))
        if best[1] < 0:
            break
        cuts = sorted(cuts + [best[1]])
    means = [float(np.mean(y[a:b])) for a, b in zip(cuts[:-1], cuts[1:])]
    fit = np.concatenate([np.full(b - a, m) for a, b, m in zip(cuts[:-1], cuts[1:], means)])
    return fit, float(np.max(np.abs(np.diff(means)))) if len(means) > 1 else 0.0


def level_features(level: np.ndarray, block: int) -> dict[str, float]:
    """Trend and level-shift evidence on a deseasonalised level series with `block` seconds per point."""
    t = np.arange(len(level), dtype=float)
    out = {"trend_strength": 0.0, "shift_strength": 0.0, "shift_size": 0.0, "trend_size": 0.0}
    if len(level) < 4:
        return out
    tc = t - t.mean()
    line = level.mean() + tc * float(tc @ (level - level.mean()) / (tc @ tc))
    noise = robust_sd(np.diff(level)) / np.sqrt(2) + 1e-12 * (1 + abs(float(np.median(level))))
    out["trend_strength"] = _robust_r2(level, line)
    out["trend_size"] = float(abs(line[-1] - line[0]) / noise)
    span = len(level) * block
    min_seg = max(2, int(max(DAY / 2, min(MIN_SEGMENT, MIN_SEGMENT_SHARE * span)) // block))
    if len(level) >= 2 * min_seg:
        fit, jump = step_fit(level, min_seg)
        out["shift_strength"] = _robust_r2(level, fit)
        out["shift_size"] = jump / noise
    return out


def _history(values: np.ndarray, step: int) -> dict[str, float]:
    ok = np.flatnonzero(np.isfinite(values))
    span = float((ok[-1] - ok[0] + 1) * step) if len(ok) else 0.0
    return {"history_days": span / DAY, "finite_points": float(len(ok)),
            "finite_share": float(len(ok) / len(values)) if len(values) else 0.0}


def compute_features(values: np.ndarray, step: int) -> Features:
    """Every feature of one series (NaN = gap) on a grid of `step` seconds."""
    values = np.asarray(values, dtype=np.float64)
    out = _history(values, step) | intermittency(values) | value_shape(values)
    if out["finite_points"] < 8:
        return Features((), out)
    ok = np.flatnonzero(np.isfinite(values))
    x, w = working_grid(values[ok[0]: ok[-1] + 1], step)
    season = detect_seasonality(x, w)
    out |= season.strengths
    factor = max(1, HOUR // w) if len(x) * w >= 2 * DAY else 1
    level = fill_gaps(block_mean(x - season.components, factor))
    out |= level_features(level, factor * w)
    resid = season.remainder
    noise = robust_sd(resid[::2])  # every other point: same estimate, half the cost
    centre = float(np.median(x))
    out["noise_sd"] = noise
    out["relative_noise"] = min(1e3, noise / abs(centre)) if centre else (1e3 if noise else 0.0)
    spread = robust_sd(x[::2]) or np.sqrt(trimmed_var(x))
    out["noise_to_signal"] = noise / spread if spread else 0.0
    out["spikiness"] = float(np.mean(np.abs(resid - np.median(resid)) > 5 * noise)) if noise else 0.0
    return Features(season.periods, {k: float(v) for k, v in out.items()})
