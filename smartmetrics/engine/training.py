"""Training data for the ensemble: a curve type when no classifier is at hand, and cleaning.

Cleaning keeps yesterday's incident from widening today's band: points far from a robust baseline
(a daily profile for seasonal curves, a one-day rolling median otherwise) are masked, and history
before a persistent level shift is moved to the new level (or cut, when enough follows the shift). All functions are pure.
"""

from __future__ import annotations

import bottleneck as bn
import numpy as np

from smartmetrics.engine.models.base import DAY, WEEK, group_median, robust_sigma
from smartmetrics.engine.models.profile import SeasonalProfile, WeeklyProfile
from smartmetrics.engine.releases import SETTLE, absorbed, bursts
from smartmetrics.engine.robust import (
    bridge,
    dilate,
    label_runs,
    median,
    median3,
    nanmedian_columns,
    rolling_median,
    run_starts,
)
from smartmetrics.engine.series import Series

CLEAN_Z = 6.0
GROW_Z = 3.0  # an incident's shoulders, masked with its peak
MAX_MASKED = 0.02
RECUR_EPISODES = 6  # masked episodes on one side that, spread over...
RECUR_YOUNG = 3  # ...(in a history shorter than two days, as few as this many, pro rata)...
RECUR_DAY_SHARE = 1 / 3  # ...this share of the days, are the series' nature, not incidents
MAX_SHIFTS = 3
CUT_AFTER = 3 * DAY
LONG_RUN = 3600  # seconds beyond GROW_Z that make an incident even without a peak at CLEAN_Z
LONG_EPISODE = 3600  # a sparse series' episode longer than this...
LONG_FACTOR = 4.0  # ...and this many times its median episode, if it does not recur, is an incident
BURST_BLIPS = 6  # so is an episode of at least this many points above, and LONG_FACTOR times the usual
BLIP_GAP = 3600  # a sparse series' blips closer than this are one episode (`episodes`)
MAX_EXCURSION = DAY  # a constant gauge away from its value at most this long, and back, had an excursion...
MAX_EXCURSION_SHARE = 0.1  # ...when it is away this rarely; more often, its other values are its nature


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

    Needs six days of history: compares the daily medians of residuals from a daily profile within
    each one- or two-day block of weekdays against the other days' spread. A block seen only once
    must be framed by ordinary days that agree with each other, so a deploy shift (or two to different
    levels) cannot pose as a weekend; a block seen in two weeks needs no frame. (A deploy rolled back
    to the very same level one or two days later does pose as one until a second week disagrees.)
    """
    t, y = series.timestamps, series.values
    ok = np.isfinite(y)
    if ok.sum() < 6 * DAY // series.step * 0.8 or t[-1] - t[0] < 6 * DAY - series.step:
        return False
    profile = SeasonalProfile(recent=DAY).fit(series)
    resid = y[ok] - profile.predict(t[ok]).mean
    day = (t[ok] // DAY).astype(np.int64)
    day -= day.min()
    medians = group_median(day, resid, int(day.max()) + 1)
    counts = np.bincount(day)
    keep = np.isfinite(medians) & (counts >= 0.5 * DAY / series.step)
    days, m = np.flatnonzero(keep), medians[keep]
    dow = (days + int(t[0] // DAY)) % 7
    floor = day_median_noise(resid - medians[day], DAY // series.step)
    for start in range(7):
        for length in (1, 2):
            inside = (dow - start) % 7 < length  # the days start .. start + length - 1 of the week
            if inside.sum() < 1 or (~inside).sum() < 4:
                continue
            base, level = median(m[~inside]), median(m[inside])
            diff = abs(level - base)
            score = diff / max(robust_sigma(m[~inside] - base), floor)
            if not score > threshold:  # most blocks stop here: the rest only for a clear difference
                continue
            agree = np.max(np.abs(m[inside] - level)) < 0.25 * diff \
                and np.sum(np.abs(m[~inside] - base) >= 0.25 * diff) <= 1  # one odd ordinary day at most
            if agree and (_repeated(days[inside]) or _framed(days, inside, m, base, diff)):
                return True
    return False


def day_median_noise(resid: np.ndarray, per_day: int) -> float:
    """The standard error of a day's median from residuals centred on their day's median, allowing for
    autocorrelation (an AR(1)-like series has far fewer independent points a day than samples).

    >>> float(round(day_median_noise(np.tile([1.0, -1.0], 144), 288), 3))
    0.109
    """
    sigma = robust_sigma(resid)
    a, b = resid[:-1], resid[1:]
    phi = float(np.corrcoef(a, b)[0, 1]) if len(resid) > 2 and np.std(a) > 0 and np.std(b) > 0 else 0.0
    phi = float(np.clip(np.nan_to_num(phi), 0.0, 0.98))
    effective = max(per_day * (1 - phi) / (1 + phi), 1.0)
    return 1.25 * sigma / np.sqrt(effective) + 1e-12


def _repeated(days: np.ndarray) -> bool:
    """Whether flagged days lie a week apart or more (the block came back: a cycle, not a shift).

    >>> _repeated(np.array([5, 6, 12])), _repeated(np.array([5, 6]))
    (True, False)
    """
    return bool(len(days) and days.max() - days.min() >= 6)


def _framed(days: np.ndarray, inside: np.ndarray, m: np.ndarray, base: float, diff: float) -> bool:
    """Whether the day just before and the day just after the flagged block are ordinary days close
    to the ordinary level (within a quarter of the block's difference).

    >>> d = np.arange(6); m = np.array([0.0, 0.0, 5.0, 5.0, 0.0, 0.0])
    >>> _framed(d, m > 1, m, 0.0, 5.0), _framed(d, d == 3, m, 0.0, 5.0)
    (True, False)
    """
    idx = np.flatnonzero(inside)
    first, last = idx[0], idx[-1]
    if first == 0 or last == len(days) - 1 or days[last] - days[first] > 1:
        return False
    before, after = first - 1, last + 1
    return bool(days[before] == days[first] - 1 and days[after] == days[last] + 1
                and not inside[before] and not inside[after]
                and abs(m[before] - base) < 0.25 * diff and abs(m[after] - base) < 0.25 * diff)


def _baseline(series: Series, seasonal: bool, period: int = DAY) -> tuple[np.ndarray, float]:
    """Residuals from a robust baseline (a trend-adjusted daily or weekly profile at the last day's level
    when seasonal, else a one-day rolling median) and the last day's level offset they include (0 for
    the rolling median): adding it back gives the residuals from the whole history's level."""
    y = series.values
    if seasonal and np.isfinite(y).sum() >= DAY // series.step:
        kind = SeasonalProfile if period == DAY else WeeklyProfile
        # Trend-adjusted: against a flat weekly profile a rising series steps up where each slot of
        # the week is seen for the second time, which the shift finder takes for a level shift.
        fitted = kind(trend=True, recent=DAY).fit(series)
        return y - fitted.predict(series.timestamps).mean, fitted.level_
    return y - rolling_median(y, max(3, DAY // series.step)), 0.0


def anomaly_mask(resid: np.ndarray, z: float = CLEAN_Z, max_fraction: float = MAX_MASKED,
                 long_run: int = 0) -> np.ndarray:
    """Incidents: runs of robust |z| above `GROW_Z` that reach `z` somewhere (so the whole incident is
    masked, not only its peak) or last `long_run` points or more (a drift or a shift of a few hours
    that never gets far enough), dilated by two points; none when more than `max_fraction` of the
    points outside such long runs exceed `z`, since then the tails are the series' nature, not an
    incident. (One eight-hour incident is 2.4% of two weeks: it must not pass for heavy tails.)

    >>> noise = np.random.default_rng(0).normal(0, 1, 200)
    >>> r = np.r_[noise[:100], np.full(6, 4.5), noise[100:]]  # 4.5 sigma for 6 points
    >>> int(anomaly_mask(r).sum()), int(anomaly_mask(r, long_run=6).sum())
    (0, 10)
    >>> r = np.r_[noise[:100], np.full(20, 8.0), noise[100:]]  # 9% of the points, all in one run
    >>> int(anomaly_mask(r).sum()), int(anomaly_mask(r, long_run=6).sum())
    (0, 24)
    """
    sigma = robust_sigma(resid)
    if sigma == 0:
        return np.zeros(len(resid), dtype=bool)
    absz = np.nan_to_num(np.abs(resid) / sigma, nan=0.0)
    long_mask = np.zeros(len(resid), dtype=bool)
    if long_run > 0:  # on a 3-point median, so noise does not break a long run into short ones
        long_runs, _ = label_runs(median3(absz) > GROW_Z)
        sizes = np.bincount(long_runs.ravel())
        long_mask = np.isin(long_runs, np.flatnonzero(sizes >= long_run)) & (long_runs > 0)
    if len(absz) and np.mean((absz > z) & ~long_mask) > max_fraction:  # heavy tails, not incidents
        return np.zeros(len(resid), dtype=bool)
    runs, _ = label_runs(absz > GROW_Z)
    seeds = np.unique(runs[(absz > z) & (runs > 0)])
    mask = (np.isin(runs, seeds) & (runs > 0)) | long_mask
    return dilate(mask, 2) if mask.any() else mask


def release_shifts(timestamps: np.ndarray, deseason: np.ndarray, releases: tuple[int, ...],
                   settle: float = SETTLE, absorb: str = "both") -> list[dict]:
    """The level shift of each burst of known releases in the data (`smartmetrics.engine.releases.bursts`):
    `{"first", "last", "until", "shift"}`, for `relevel` to undo.

    A burst that settled within the data is measured as the median of `deseason` from its last release
    up to a day on (or to the next burst) minus the median over up to a day before its first release
    (or since the previous burst), and kept if `absorb` accepts it, as the daemon moves a band. A burst
    still settling at the end of the data has no shift: the daemon settles it on the new band.
    Releases after the data are not known yet and ignored.

    >>> t = np.arange(0, 2 * 86400, 3600)  # the data ends at 169200
    >>> shifts = release_shifts(t, np.where(t < 86400, 10.0, 20.0), (86400, 167400, 172800), settle=3600)
    >>> [(r["first"], r["until"], r["shift"]) for r in shifts]
    [(86400, 90000, 10.0), (167400, 171000, None)]
    """
    if not len(timestamps):
        return []
    start, end = int(timestamps[0]), int(timestamps[-1])
    found = [b for b in bursts([r for r in releases if r <= end], settle) if b.first > start]
    out: list[dict] = []
    for i, burst in enumerate(found):
        size = None
        if burst.until <= end:
            since = found[i - 1].until if i else -np.inf
            stop = found[i + 1].first if i + 1 < len(found) else np.inf
            before = deseason[(timestamps >= max(since, burst.first - DAY)) & (timestamps < burst.first)]
            after = deseason[(timestamps >= burst.last) & (timestamps < min(stop, burst.until + DAY))]
            before, after = before[np.isfinite(before)], after[np.isfinite(after)]
            if len(before) and len(after):
                size = float(np.median(after) - np.median(before))
        out.append({"first": burst.first, "last": burst.last, "until": burst.until, "shift": absorbed(size, absorb)})
    return out


def relevel(timestamps: np.ndarray, values: np.ndarray, shifts: list[dict]) -> np.ndarray:
    """`values` with the history before each release moved by its shift (`release_shifts`) and the
    points while it settled blanked; a new array.

    >>> t = np.arange(0, 4 * 3600, 3600)
    >>> relevel(t, np.array([1.0, 1.0, 5.0, 5.0]), [{"first": 3600, "until": 7200, "shift": 4.0}]).tolist()
    [5.0, nan, 5.0, 5.0]
    """
    out = np.array(values, dtype=np.float64, copy=True)
    for record in shifts:
        if record.get("shift") is not None:
            out[timestamps < record["first"]] += record["shift"]
    for record in shifts:
        out[(timestamps >= record["first"]) & (timestamps < record["until"])] = np.nan
    return out


def find_level_shift(values: np.ndarray, step: int, min_after: int = 2 * 3600,
                     window: int = DAY) -> tuple[int, float] | None:
    """The index and size of the most significant persistent level shift in de-seasonalised values.

    Each split of the hourly block medians is judged on the `window` on either side only, so earlier
    or later shifts do not blur it: kept when the jump is large against the block noise and the
    levels on both sides are flat (so a trend or a wave is not taken for a shift).
    """
    blocks, offset, block = _hourly_blocks(values, step)
    n, w = len(blocks), max(2, window // (block * step))
    min_after_blocks = max(2, -(-min_after // (block * step)))
    if n < 8 or n - min_after_blocks < 2:
        return None
    noise = max(robust_sigma(np.diff(blocks)) / np.sqrt(2), 1e-12)
    k = np.arange(2, n - min_after_blocks + 1)
    # the medians and counts of blocks[k - w:k] and blocks[k:k + w], windows that end at k - 1 and k + w - 1
    padded = np.concatenate((blocks, np.full(w, np.nan)))
    medians = bn.move_median(padded, w, min_count=1)
    counts = bn.move_sum(np.isfinite(padded).astype(np.float64), w, min_count=1)
    m_head, n_head, m_tail, n_tail = medians[k - 1], counts[k - 1], medians[k + w - 1], counts[k + w - 1]
    stat = np.abs(m_tail - m_head) / np.sqrt(1 / n_head + 1 / n_tail)
    best_k = _refine_split(blocks, int(k[np.argmax(stat)]), w, min_after_blocks)
    head, tail = blocks[max(0, best_k - w):best_k], blocks[best_k:best_k + w]
    jump = float(np.median(tail) - np.median(head))
    flat = max(_spread_of(head), _spread_of(tail)) < 0.2 * abs(jump)
    if abs(jump) > 8 * noise and flat and abs(jump) > 3 * robust_sigma(head):
        return offset + best_k * block, jump
    return None


def _refine_split(blocks: np.ndarray, k: int, w: int, min_after: int) -> int:
    """The split within three blocks of `k` that a two-level step (medians of the `w` blocks on either
    side) fits best: window medians barely move near the true split, the step's error does.

    >>> _refine_split(np.r_[np.zeros(10), np.ones(10)], 12, 8, 2)
    10
    """
    lo, hi = max(2, k - 3), min(len(blocks) - min_after, k + 3)
    region = blocks[max(0, k - w):k + w]
    a, b = np.median(blocks[max(0, k - w):k]), np.median(blocks[k:k + w])
    errors = [np.abs(region - np.where(np.arange(len(region)) < c - max(0, k - w), a, b)).sum()
              for c in range(lo, hi + 1)]
    return lo + int(np.argmin(errors)) if hi >= lo else k


def _spread_of(x: np.ndarray) -> float:
    """Median absolute deviation from the median."""
    return float(np.median(np.abs(x - np.median(x))))


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
        medians[ok] = nanmedian_columns(chunks[ok].T)
        medians = np.interp(np.arange(n), np.flatnonzero(ok), medians[ok])
    return medians, offset, block


def clean_training(series: Series, seasonal: bool, mask: bool = True, period: int = DAY, *,
                   releases: tuple[int, ...] = (), settle: float = SETTLE, absorb: str = "both") -> tuple[Series, dict]:
    """The series with its own anomalies masked and its level shifts undone (unless `mask` is off, as
    for sparse series whose spikes are their normal).

    Known `releases` come first (`release_shifts`, also when `mask` is off). Then up to three shifts are
    found, latest level first; history before a shift is moved to the new level (keeping its noise and
    daily shape for the scale), or cut when three days or more follow the shift.
    """
    values = series.values.astype(np.float64).copy()
    info: dict = {"masked": 0, "level_shift": None}
    if not mask and not releases:
        return Series(series.labels, series.timestamps, values, series.step, series.name), info
    first = _baseline(series, seasonal, period) if seasonal else None
    deseason = first[0].copy() if first else values.copy()
    if releases:
        info["releases"] = release_shifts(series.timestamps, deseason, releases, settle, absorb)
        values = relevel(series.timestamps, values, info["releases"])
        deseason = relevel(series.timestamps, deseason, info["releases"])
    if not mask:
        return Series(series.labels, series.timestamps, values, series.step, series.name), info
    latest = 0
    for _ in range(MAX_SHIFTS):
        shift = find_level_shift(deseason, series.step)
        if shift is None:
            break
        at, jump = shift
        values[:at] += jump
        deseason[:at] += jump
        if at >= latest:
            latest = at
            info["level_shift"] = {"at": int(series.timestamps[latest]), "size": jump}
    start = latest if latest and len(values) - latest >= CUT_AFTER // series.step else 0
    out = Series(series.labels, series.timestamps[start:], values[start:], series.step, series.name)
    long_run = max(3, LONG_RUN // series.step)
    moved = bool(releases) or info["level_shift"] is not None  # else `out` holds the series' own values,
    resid, level = first if first and not moved else _baseline(out, seasonal, period)  # whose profile is fitted
    masked = anomaly_mask(resid, long_run=long_run)
    if level and masked.any():  # an incident against the recent level and the whole history alike:
        # against a quiet Sunday alone, a first week's weekdays would look like one long incident
        masked &= anomaly_mask(resid + level, long_run=long_run)
    masked &= ~recurring(masked, resid, out.timestamps)
    info["masked"] = int(masked.sum())
    cleaned = np.where(masked, np.nan, out.values)
    return Series(series.labels, out.timestamps, cleaned, series.step, series.name), info


def recurring(masked: np.ndarray, resid: np.ndarray, timestamps: np.ndarray, need: int | None = None) -> np.ndarray:
    """The masked points that belong to behaviour the history shows again and again: on each side
    (above or below the baseline), when the masked episodes number at least `RECUR_EPISODES` and fall
    on at least `RECUR_DAY_SHARE` of the days with data, all of that side's episodes are normal (hourly
    spikes, a nightly job's burst), not incidents, and stay in training. A few incidents on a few days
    stay masked. A history shorter than two days needs episodes pro rata (`recur_episodes`): a young
    fit that saw spikes three times in its one day has seen them again and again. `need` overrides
    how many episodes it takes (`habit_episodes`).

    >>> t = np.arange(0, 7 * 86400, 3600)
    >>> r = np.zeros(len(t)); r[::12] = 9.0  # twice a day, every day
    >>> int(recurring(r > 5, r, t).sum()), int(recurring((r > 5) & (t < 86400), r, t).sum())
    (14, 0)
    """
    out = np.zeros(len(masked), dtype=bool)
    if not masked.any():
        return out
    runs, count = label_runs(masked)
    days_seen = len(np.unique(timestamps // DAY))
    if need is None:
        need = recur_episodes(float(timestamps[-1] - timestamps[0]) / DAY)
    signs = np.sign(np.bincount(runs, weights=np.nan_to_num(resid), minlength=count + 1)[1:])
    starts = np.flatnonzero(run_starts(masked))
    for sign in (1.0, -1.0):
        episodes = np.flatnonzero(signs == sign)
        days = len(np.unique(timestamps[starts[episodes]] // DAY))
        if len(episodes) >= need and days >= RECUR_DAY_SHARE * days_seen:
            out |= np.isin(runs, episodes + 1)
    return out


def habit_episodes(span_days: float) -> int:
    """Episodes that make a sparse gauge's blips a habit in a history of `span_days` days: the rate
    of `RECUR_EPISODES` in two weeks, at least `RECUR_YOUNG`. An error ratio that blipped on four of
    its first six days will blip again; `recur_episodes` would wait for a sixth blip, each one alerting.

    >>> habit_episodes(14.0), habit_episodes(6.0), habit_episodes(2.0)
    (6, 3, 3)
    """
    return int(np.clip(np.ceil(RECUR_EPISODES * span_days / 14), RECUR_YOUNG, RECUR_EPISODES))


def recur_episodes(span_days: float) -> int:
    """Episodes on one side that make behaviour recurring in a history of `span_days` days:
    `RECUR_EPISODES` over two days or more, pro rata below, at least `RECUR_YOUNG`.

    >>> recur_episodes(14.0), recur_episodes(1.5), recur_episodes(0.99)
    (6, 5, 3)
    """
    return int(np.clip(np.ceil(RECUR_EPISODES * span_days / 2), RECUR_YOUNG, RECUR_EPISODES))


def excursions(values: np.ndarray, step: int) -> np.ndarray:
    """Points where a gauge held at one non-zero value (a replica count, a limit, a setting) left it
    for at most `MAX_EXCURSION` and came back: an incident, masked from training like any other.

    Robust-sigma masking sees nothing on such a series (its sigma is 0), so one afternoon at another
    value would otherwise widen the band for a week. A departure still under way at the end may be
    a new value and is kept; a gauge that rests at zero (queue depth, failed jobs) counts events by
    leaving it, and one away more than `MAX_EXCURSION_SHARE` of the time has two normal values.

    >>> v = np.r_[np.full(40, 8.0), np.full(3, 9.5), np.full(10, 8.0), np.full(2, 7.0)]
    >>> np.flatnonzero(excursions(v, 300)).tolist()  # the ended visit to 9.5, not the final 7.0
    [40, 41, 42]
    >>> int(excursions(np.r_[np.zeros(40), np.ones(2), np.zeros(5)], 300).sum())  # resting at zero
    0
    """
    out = np.zeros(len(values), dtype=bool)
    idx = np.flatnonzero(np.isfinite(values))
    if len(idx) == 0:
        return out
    seen = values[idx]
    mode = resting_value(seen)
    away = seen != mode
    if mode == 0 or not away.any() or away.mean() > MAX_EXCURSION_SHARE:
        return out
    edges = np.diff(np.r_[0, away.astype(np.int8), 0])
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        ended = stop < len(seen)
        if ended and idx[stop - 1] - idx[first] + step <= MAX_EXCURSION:
            out[idx[first]:idx[stop - 1] + 1] = True
    return out


def resting_value(finite: np.ndarray) -> float:
    """The value a gauge holds most often (the smallest of equally frequent ones), of its finite values.

    >>> resting_value(np.array([3.0, 0.0, 3.0, 7.0]))
    3.0
    """
    levels, counts = np.unique(finite, return_counts=True)
    return float(levels[np.argmax(counts)])


def episodes(above: np.ndarray, step: int) -> np.ndarray:
    """`above` with the gaps between points less than `BLIP_GAP` apart filled: a burst of blips is one
    episode, as an incident's errors come and go within it.

    >>> episodes(np.array([1, 0, 0, 1, 0] + [0] * 12 + [1], dtype=bool), 300).astype(int).tolist()[:6]
    [1, 1, 1, 1, 0, 0]
    """
    return bridge(above, _gap_points(step))


def _gap_points(step: int) -> int:
    """The most points between two blips of one episode (`BLIP_GAP` apart at most)."""
    return -(-BLIP_GAP // max(step, 1)) - 2


def _long_runs(spans: np.ndarray, above: np.ndarray, step: int, gap: int = 0) -> np.ndarray:
    """The points of the runs of `spans` that `one_off_episodes` calls incidents before asking whether
    they recur: long (`LONG_EPISODE`), or holding at least `BURST_BLIPS` points of `above`, either
    `LONG_FACTOR` times the usual run's; at most `MAX_EXCURSION` long and not under way at the end
    (ending in the last `gap` + 1 points: a burst whose last blip came a scrape ago goes on); none
    when they would hold more than `MAX_EXCURSION_SHARE` of the points."""
    runs, count = label_runs(spans)
    if count == 0:
        return np.zeros(len(spans), dtype=bool)
    lengths = np.bincount(runs, minlength=count + 1)[1:]
    blips = np.bincount(runs, weights=above, minlength=count + 1)[1:]
    long = (lengths * step > max(LONG_EPISODE, LONG_FACTOR * float(np.median(lengths)) * step)) \
        | (blips >= BURST_BLIPS) & (blips > LONG_FACTOR * float(np.median(blips)))
    long &= lengths * step <= MAX_EXCURSION
    last = np.flatnonzero(runs)[-1]
    if last >= len(runs) - 1 - max(gap, 0):
        long[runs[last] - 1] = False  # still under way
    points = np.isin(runs, np.flatnonzero(long) + 1)
    if points.sum() > MAX_EXCURSION_SHARE * len(points):
        return np.zeros(len(spans), dtype=bool)
    return points


def one_off_episodes(above: np.ndarray, timestamps: np.ndarray, step: int) -> np.ndarray:
    """The points of episodes that do not recur (`recurring`) and are far longer or hold far more blips
    than the usual one (`_long_runs`; an episode is a run of `above`, or blips under `BLIP_GAP` apart,
    `episodes`): a sparse counter's afternoon-long incident among its one-scrape blips, or an hour-long
    burst of blips, masked from its training and from the blips its band reaches. As for a gauge's
    `excursions`, only an episode that ended within `MAX_EXCURSION` counts (one still under way at the
    end may be the series' new level), and none when such episodes hold more than
    `MAX_EXCURSION_SHARE` of the points (then they are the series' nature).

    >>> a = np.zeros(2000, dtype=bool); a[::40] = True; a[1005:1025] = True  # with the blip at 1000
    >>> np.flatnonzero(one_off_episodes(a, np.arange(2000) * 300, 300)).tolist() == list(range(1000, 1025))
    True
    >>> a[1970:] = True  # under way at the end: kept
    >>> int(one_off_episodes(a, np.arange(2000) * 300, 300)[1970:].sum())
    0
    """
    if step <= 0:
        return np.zeros(len(above), dtype=bool)
    points = _long_runs(above, above, step) | _long_runs(episodes(above, step), above, step, _gap_points(step))
    if not points.any():
        return points
    return points & ~recurring(points, points.astype(np.float64), timestamps)
