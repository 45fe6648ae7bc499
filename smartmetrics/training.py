"""Training data for the ensemble: a curve type when no classifier is at hand, and cleaning.

Cleaning keeps yesterday's incident from widening today's band: points far from a robust baseline
(a daily profile for seasonal curves, a one-day rolling median otherwise) are masked, and history
before a persistent level shift is moved to the new level (or cut, when enough follows the shift). All functions are pure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smartmetrics.models.base import DAY, WEEK, group_median, robust_sigma
from smartmetrics.models.profile import SeasonalProfile, WeeklyProfile
from smartmetrics.series import Series

CLEAN_Z = 6.0
MAX_MASKED = 0.02
MAX_SHIFTS = 3
CUT_AFTER = 3 * DAY


def quick_classify(series: Series) -> dict:
    """A coarse curve type and periods from a few statistics (used when `classify` is unavailable)."""
    y = series.values[np.isfinite(series.values)]
    result = {"curve_type": "stable", "periods": [], "confidence": 0.3, "features": {},
              "reasons": ["quick classification (no classifier available)"]}
    if len(y) < max(12, 3600 // series.step):
        return {**result, "curve_type": "insufficient"}
    if np.ptp(y) == 0:
        return {**result, "curve_type": "constant"}
    if np.mean(y == 0) >= 0.5:
        return {**result, "curve_type": "intermittent"}
    day_corr = lag_correlation(series.values, DAY // series.step)
    week_corr = lag_correlation(series.values, WEEK // series.step)
    result["features"] = {"acf_day": day_corr, "acf_week": week_corr}
    if max(day_corr, week_corr) > 0.5:
        periods = [WEEK, DAY] if week_corr > day_corr + 0.1 else [DAY, WEEK] if week_corr > 0.5 else [DAY]
        return {**result, "curve_type": "seasonal", "periods": periods}
    return result


def lag_correlation(values: np.ndarray, lag: int) -> float:
    """Pearson correlation between the series and itself `lag` points later (0 when undefined)."""
    if lag <= 0 or len(values) < 2 * lag:
        return 0.0
    a, b = values[:-lag], values[lag:]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return 0.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def weekly_effect(series: Series, threshold: float = 6.0) -> bool:
    """Whether one or two days of the week sit apart from the others (a weekend dip, a Monday peak).

    Needs a week of history: compares the daily medians of residuals from a daily profile within
    each one- or two-day block of weekdays against the other days' spread.
    """
    t, y = series.timestamps, series.values
    ok = np.isfinite(y)
    if ok.sum() < 7 * DAY // series.step * 0.8 or t[-1] - t[0] < 7 * DAY - series.step:
        return False
    profile = SeasonalProfile(recent=DAY).fit(series)
    resid = y[ok] - profile.predict(t[ok]).mean
    day = (t[ok] // DAY).astype(np.int64)
    day -= day.min()
    medians = group_median(day, resid, int(day.max()) + 1)
    counts = np.bincount(day)
    keep = np.isfinite(medians) & (counts >= 0.5 * DAY / series.step)
    dow, m = (np.flatnonzero(keep) + int(t[0] // DAY)) % 7, medians[keep]
    floor = 0.5 * robust_sigma(resid) / np.sqrt(DAY / series.step) + 1e-12
    best = 0.0
    for start in range(7):
        for length in (1, 2):
            inside = np.isin(dow, [(start + i) % 7 for i in range(length)])
            if inside.sum() >= 1 and (~inside).sum() >= 4 and _surrounded(inside):
                diff = abs(np.median(m[inside]) - np.median(m[~inside]))
                best = max(best, diff / max(robust_sigma(m[~inside] - np.median(m[~inside])), floor))
    return best > threshold


def _surrounded(inside: np.ndarray) -> bool:
    """Whether ordinary days come both before and after the first and last flagged days, so that a
    level shift (all days after it differ) is not taken for a day-of-week pattern.

    >>> _surrounded(np.array([False, True, True, False])), _surrounded(np.array([False, False, True]))
    (True, False)
    """
    idx, out = np.flatnonzero(inside), np.flatnonzero(~inside)
    return bool(len(idx) and len(out) and out[0] < idx[0] and out[-1] > idx[-1])


def baseline_residuals(series: Series, seasonal: bool, period: int = DAY) -> np.ndarray:
    """Residuals from a robust baseline: a daily (or weekly) profile when seasonal, else a one-day
    rolling median."""
    y = series.values
    if seasonal and np.isfinite(y).sum() >= DAY // series.step:
        model = SeasonalProfile(trend=False, recent=DAY) if period == DAY else WeeklyProfile(trend=False, recent=DAY)
        fitted = model.fit(series)
        return y - fitted.predict(series.timestamps).mean
    window = max(3, DAY // series.step)
    med = pd.Series(y).rolling(window, center=True, min_periods=1).median().to_numpy()
    return y - med


def anomaly_mask(resid: np.ndarray, z: float = CLEAN_Z, max_fraction: float = MAX_MASKED) -> np.ndarray:
    """Points whose robust z-score exceeds `z` (dilated by two points); none when more than
    `max_fraction` exceed it, since then the tails are the series' nature, not an incident."""
    sigma = robust_sigma(resid)
    if sigma == 0:
        return np.zeros(len(resid), dtype=bool)
    absz = np.abs(resid) / sigma
    finite = absz[np.isfinite(absz)]
    if len(finite) and np.mean(finite > z) > max_fraction:  # heavy tails, not incidents: keep them
        return np.zeros(len(resid), dtype=bool)
    mask = np.nan_to_num(absz, nan=0.0) > z
    return mask | np.roll(mask, 1) | np.roll(mask, -1) | np.roll(mask, 2) | np.roll(mask, -2)


def find_level_shift(values: np.ndarray, step: int, min_after: int = 2 * 3600) -> tuple[int, float] | None:
    """The index and size of the most significant persistent level shift in de-seasonalised values.

    The split maximising a CUSUM-style statistic on hourly block medians is kept when the jump is
    large against the block noise and the level after it is flat (so a trend is not taken for a shift).
    """
    blocks, offset, block = _hourly_blocks(values, step)
    n = len(blocks)
    min_after_blocks = max(2, -(-min_after // (block * step)))
    if n < 8 or n - min_after_blocks < 2:
        return None
    k = np.arange(2, n - min_after_blocks + 1)
    c = np.cumsum(blocks)
    before, after = c[k - 1] / k, (c[-1] - c[k - 1]) / (n - k)
    stat = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    cut = int(k[np.argmax(stat)])
    head, tail = blocks[:cut], blocks[cut:]
    jump = float(np.median(tail) - np.median(head))
    noise = max(robust_sigma(np.diff(blocks)) / np.sqrt(2), 1e-12)
    flat_after = np.median(np.abs(tail - np.median(tail))) < 0.25 * abs(jump)
    if abs(jump) > 8 * noise and flat_after and abs(jump) > 3 * robust_sigma(head):
        return offset + cut * block, jump
    return None


def _hourly_blocks(values: np.ndarray, step: int) -> tuple[np.ndarray, int, int]:
    """Medians of hour-long blocks aligned to the end (gaps interpolated), the first block's index,
    and the block length in points."""
    block = max(1, 3600 // step)
    n = len(values) // block
    offset = len(values) - n * block
    if n == 0:
        return np.zeros(0), offset, block
    chunks = values[offset:].reshape(n, block)
    ok = np.isfinite(chunks).any(axis=1)
    medians = np.full(n, np.nan)
    if ok.any():
        medians[ok] = np.nanmedian(chunks[ok], axis=1)
        medians = np.interp(np.arange(n), np.flatnonzero(ok), medians[ok])
    return medians, offset, block


def clean_training(series: Series, seasonal: bool, mask: bool = True, period: int = DAY) -> tuple[Series, dict]:
    """The series with its own anomalies masked and its level shifts undone (unless `mask` is off, as
    for sparse series whose spikes are their normal).

    Up to three shifts are found, latest level first; history before a shift is moved to the new level
    (keeping its noise and daily shape for the scale), or cut when three days or more follow the shift.
    """
    values = series.values.astype(np.float64).copy()
    info: dict = {"masked": 0, "level_shift": None}
    if not mask:
        return Series(series.labels, series.timestamps, values, series.step, series.name), info
    deseason = baseline_residuals(series, seasonal, period) if seasonal else values.copy()
    latest = 0
    for _ in range(MAX_SHIFTS):
        shift = find_level_shift(deseason, series.step)
        if shift is None:
            break
        at, jump = shift
        values[:at] += jump
        deseason[:at] += jump
        latest = max(latest, at)
        info["level_shift"] = {"at": int(series.timestamps[latest]), "size": jump}
    start = latest if latest and len(values) - latest >= CUT_AFTER // series.step else 0
    out = Series(series.labels, series.timestamps[start:], values[start:], series.step, series.name)
    masked = anomaly_mask(baseline_residuals(out, seasonal, period))
    info["masked"] = int(masked.sum())
    cleaned = np.where(masked, np.nan, out.values)
    return Series(series.labels, out.timestamps, cleaned, series.step, series.name), info
