"""Period detection and a cheap robust seasonal decomposition (hourly, daily, weekly, and a dominant
period from the periodogram refined on the ACF).

Everything is a few numpy passes over at most ~4,000 points (longer series are block-averaged first).
Seasonal strength is two-fold cross-validated (each half of the cycles predicted from the other half's
per-phase medians), so a single incident cannot fake or hide a cycle, and noise cannot overfit one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from smartmetrics.engine.robust import (
    block_mean,
    fill_gaps,
    nanmedian_columns,
    robust_sd,
    theil_sen_slope,
    trimmed_var,
)

DAY, WEEK, HOUR = 86400, 604800, 3600
WORK_POINTS = 4096
PERIOD_MIN_STRENGTH = 0.4  # cross-validated strength above which a period is taken as real
COARSE_STEP = 900  # seconds: the grid of the daily analysis
SPECTRAL_GATE = 40.0  # times the median periodogram power a sub-daily candidate must reach
WEEKLY_BLOCK = 3 * HOUR  # weekly cycles are compared on 3-hour means: day-level shapes, little noise
WEEKLY_TRIM = 0.1
WEEKLY_MATERIAL = 0.2  # a weekly cycle's sd must be a fifth of the series' own (trimmed) sd  # two weeks give one comparison: a bad day in either must not decide it


@dataclass(frozen=True)
class Seasonality:
    """Accepted periods (seconds, strongest first), the strength of every candidate, and the remainder."""

    periods: tuple[int, ...]
    strengths: dict[str, float]
    remainder: np.ndarray
    components: np.ndarray


def _cycles(x: np.ndarray, lag: int) -> np.ndarray:
    """The series cut into rows of one period each: whole cycles only when there are two or more, else
    the last row padded with NaN."""
    k = len(x) // lag
    if k >= 2:
        return x[: k * lag].reshape(k, lag)
    k = -(-len(x) // lag)
    padded = np.full(k * lag, np.nan)
    padded[: len(x)] = x
    return padded.reshape(k, lag)


def _median_rows(rows: np.ndarray) -> np.ndarray:
    """Per-column medians; the NaN-aware (slower) path only for a padded last cycle."""
    if not np.isnan(rows).any():
        return np.median(rows, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN, as it should
        return nanmedian_columns(rows)


def seasonal_profile(x: np.ndarray, lag: int) -> np.ndarray:
    """The per-phase median over all cycles, repeated over the series' length."""
    profile = _median_rows(_cycles(x, lag))
    profile = np.nan_to_num(profile - np.nanmedian(profile))
    return np.resize(profile, len(x))


def cv_strength(x: np.ndarray, lag: int, trim: float = 0.02) -> float:
    """Seasonal strength `1 - var(remainder) / var(series)` with each half of the cycles predicted by the
    other half's per-phase medians, and trimmed variances; ~0 for noise, ~1 for a clean cycle.

    >>> t = np.arange(2000)
    >>> round(cv_strength(np.sin(2 * np.pi * t / 50), 50), 2)
    1.0
    """
    if lag < 2 or len(x) < 1.9 * lag:  # a second cycle a few scrapes short still counts
        return 0.0
    rows = _cycles(x, lag)
    even, odd = _median_rows(rows[0::2]), _median_rows(rows[1::2])
    predicted = np.where((np.arange(len(rows)) % 2 == 0)[:, None], odd, even)
    resid, values = (rows - predicted).ravel(), rows.ravel()
    ok = np.isfinite(resid)
    if not ok.all():
        resid, values = resid[ok], values[ok]
    base = trimmed_var(values, trim)  # about its own median, like the remainder
    if base == 0:
        return 0.0
    return float(max(0.0, 1.0 - trimmed_var(resid, trim) / base))


@dataclass(frozen=True)
class Spectrum:
    """The periodogram of a clipped, centred series (zero-padded to twice its length) and its ACF."""

    power: np.ndarray
    periods: np.ndarray
    n: int

    def acf(self) -> np.ndarray:
        """Autocovariance by lag (unnormalised), from the same transform."""
        return np.fft.irfft(self.power)[: self.n]


def spectrum(x: np.ndarray) -> Spectrum:
    """Periodogram of the series with values beyond 5 robust sd (from every 4th point) clipped."""
    n = len(x)
    centre = float(np.median(x))
    limit = 5 * robust_sd(x[::4]) + 1e-12
    size = 1 << (2 * n - 1).bit_length()  # zero-padded to a power of two, at least twice the length
    power = np.abs(np.fft.rfft(np.clip(x - centre, -limit, limit), size)) ** 2
    with np.errstate(divide="ignore"):
        periods = 1.0 / np.fft.rfftfreq(size)
    return Spectrum(power, periods, n)


def prominent(spec: Spectrum, lag: float) -> bool:
    """Whether the periodogram near `lag` stands far above its median (a cheap gate before the CV test).

    The floor is the median power of periods within a factor 1.6 of `lag`, so red (autocorrelated)
    noise does not pass as a cycle. A cycle strong enough to pass the cross-validated strength test
    peaks hundreds of times above it; a noise bin is rarely beyond ten times it.
    """
    near = np.abs(spec.periods - lag) <= 0.03 * lag
    around = (spec.periods >= lag / 1.6) & (spec.periods <= lag * 1.6)
    if not near.any():
        return False
    floor = float(np.median(spec.power[around])) + 1e-300
    return float(spec.power[near].max()) >= SPECTRAL_GATE * floor


def dominant_lag(spec: Spectrum, min_lag: int, max_lag: int) -> int:
    """The period (in points) of the periodogram's highest peak if it is prominent, refined to the
    nearest ACF maximum (the periodogram's resolution is coarse at long periods); 0 if none."""
    n = spec.n
    band = (spec.periods >= min_lag) & (spec.periods <= max_lag)
    if max_lag < min_lag or n < 3 * min_lag or not band.any():
        return 0
    guess = spec.periods[band][np.argmax(spec.power[band])]
    if not prominent(spec, guess):
        return 0
    lo, hi = max(min_lag, int(guess * 0.85)), min(n - 1, int(guess * 1.15) + 1)
    return int(lo + np.argmax(spec.acf()[lo:hi + 1])) if hi > lo else int(round(guess))


def working_grid(values: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """The series block-averaged to at most WORK_POINTS points (with the new step), gaps filled."""
    factor = max(1, -(-len(values) // WORK_POINTS))
    while factor > 1 and DAY % (factor * step):  # keep a whole number of points per day
        factor += 1
    return fill_gaps(block_mean(values, factor)), step * factor


def daily_level(x: np.ndarray, per_day: int) -> np.ndarray:
    """A trend through each day's median, linearly interpolated: immune to sub-day cycles and incidents.

    A trailing partial day counts when it holds at least half a day.
    """
    k = len(x) // per_day
    medians = list(np.median(x[: k * per_day].reshape(k, per_day), axis=1)) if k else []
    centres = list(np.arange(k) * per_day + per_day / 2)
    tail = len(x) - k * per_day
    if tail >= per_day // 2:
        medians.append(float(np.median(x[k * per_day:])))
        centres.append(k * per_day + tail / 2)
    if len(medians) < 2:
        return np.full(len(x), float(np.median(x)))
    return np.interp(np.arange(len(x)), centres, medians)


def _repeats_within(profile: np.ndarray, lag: int) -> bool:
    """Whether a one-cycle profile is itself mostly a repetition of a shorter `lag` (then that is the period)."""
    rows = profile.reshape(-1, lag)
    base = float(np.var(profile))
    return base > 0 and 1.0 - float(np.var(rows - rows.mean(axis=0))) / base >= 0.8


def _sub_daily(d: np.ndarray, w: int, per_day: int) -> dict[str, int]:
    """Candidate periods shorter than a day (in points of step `w`) that stand out in the periodogram:
    hourly and the dominant one."""
    spec = spectrum(d)
    out = {}
    if HOUR % w == 0 and HOUR // w >= 4 and prominent(spec, HOUR // w):
        out["hourly"] = HOUR // w
    lag = dominant_lag(spec, 4, min(len(d) // 3, int(0.8 * per_day)))
    if lag and all(abs(lag - v) > 0.1 * v for v in out.values()):
        out["other"] = lag
    return out


def _weekly(x: np.ndarray, components: np.ndarray, w: int) -> tuple[float, np.ndarray, bool]:
    """Cross-validated weekly strength on 3-hour means of the series minus its trend and sub-weekly cycles,
    the weekly component, and whether that component is just one day repeated."""
    factor = max(1, WEEKLY_BLOCK // w)
    zh = block_mean(x - components, factor)
    lag = WEEK // (w * factor)
    if len(zh) < 1.9 * lag:
        return 0.0, np.zeros(len(x)), False
    zh = zh - theil_sen_slope(block_mean(zh, lag // 7)) / (lag // 7) * np.arange(len(zh))
    strength = cv_strength(zh, lag, trim=WEEKLY_TRIM)
    if strength < PERIOD_MIN_STRENGTH:
        return strength, np.zeros(len(x)), False
    profile = seasonal_profile(zh, lag)[:lag]
    weekly = np.resize(np.repeat(profile, factor), len(x))
    # Two weeks of block means can agree on a pattern far smaller than the series' own wiggle (a
    # quantised gauge drifting by a hundredth): such a cycle is real but immaterial, so it is not one.
    if np.std(weekly) < WEEKLY_MATERIAL * np.sqrt(trimmed_var(x - components)):
        return 0.0, np.zeros(len(x)), False
    return strength, weekly, _repeats_within(profile, lag // 7)


def _daily(x: np.ndarray, w: int) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Daily level and daily strength on a grid of at least 15 minutes (plenty for a daily shape):
    (level at step `w`, strength, coarse series minus its level, coarse factor)."""
    factor = max(1, COARSE_STEP // w) if DAY % max(w, COARSE_STEP) == 0 else 1
    xc = block_mean(x, factor)
    per_day = DAY // (w * factor)
    if len(xc) < 2 * per_day:
        return np.full(len(x), float(np.median(x))), 0.0, xc - np.median(xc), factor
    level_c = daily_level(xc, per_day)
    level = np.interp((np.arange(len(x)) - (factor - 1) / 2) / factor, np.arange(len(xc)), level_c)
    strength = cv_strength(xc - level_c, per_day) if DAY % w == 0 else 0.0
    return level, strength, xc - level_c, factor


def detect_seasonality(x: np.ndarray, w: int) -> Seasonality:
    """Periods of a gap-filled series on step `w`: sub-daily and daily on the series minus its daily
    level, tried shortest first; a daily cycle that is a repeated shorter one is reported as the shorter."""
    level, s_day, coarse, factor = _daily(x, w)
    d = x - level
    per_day = DAY // w
    sub = _sub_daily(d, w, per_day)
    other_lag = sub.get("other", 0)
    strengths = {"seasonal_hourly": 0.0, "seasonal_other": 0.0, "seasonal_daily": s_day}
    strengths |= {f"seasonal_{k}": cv_strength(d, v) for k, v in sub.items()}
    found: list[tuple[int, float]] = []  # (period seconds, component variance)
    comp = np.zeros(len(x))
    if s_day >= PERIOD_MIN_STRENGTH:
        day_profile = seasonal_profile(coarse, DAY // (w * factor))[: DAY // (w * factor)]
        profile = np.resize(np.repeat(day_profile, factor), len(x))
        for name, lag in sorted(sub.items(), key=lambda kv: -strengths[f"seasonal_{kv[0]}"]):
            if strengths[f"seasonal_{name}"] >= PERIOD_MIN_STRENGTH and per_day % lag == 0 \
                    and _repeats_within(profile[:per_day], lag):
                profile = seasonal_profile(d, lag)
                sub.pop(name)
                found.append((lag * w, float(np.var(profile))))
                break
        else:
            found.append((DAY, float(np.var(profile))))
        comp = comp + profile
    for name, lag in sub.items():
        s = cv_strength(d - comp, lag) if found else strengths[f"seasonal_{name}"]
        strengths[f"seasonal_{name}"] = s
        if s >= PERIOD_MIN_STRENGTH:
            profile = seasonal_profile(d - comp, lag)
            found.append((lag * w, float(np.var(profile))))
            comp = comp + profile
    strengths["seasonal_weekly"], weekly, daily_only = _weekly(x, comp, w)
    if strengths["seasonal_weekly"] >= PERIOD_MIN_STRENGTH:
        # a brief daily event (a nightly job's spike) that the daily test trims away as an outlier
        # shows up in the 3-hour means of both weeks alike: it is a daily cycle, not a weekly one
        period = DAY if daily_only else WEEK
        if all(p != period for p, _ in found):
            found.append((period, float(np.var(weekly))))
    strengths["other_period"] = float(other_lag * w)
    periods = tuple(p for p, _ in sorted(found, key=lambda pv: -pv[1]))
    return Seasonality(periods, strengths, d - comp, comp)
