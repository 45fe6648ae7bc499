"""Scorers for backtest output: the NAB score, event precision/recall, alert rates, band coverage.

Every function takes plain arrays (rows of one backtest) so that smartmetrics and each peer are judged
by the same code. The NAB score follows the published rules (shared/bench/README.md): probationary
rows are ignored, the earliest detection in a window scores on a sigmoid, a detection outside every
window costs according to its distance past the preceding window, a missed window costs `fn`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Profile:
    """NAB application profile: weights of a true positive, a false positive and a false negative."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)

Window = tuple[int, int]  # first and last row index of an anomaly window, inclusive


def scaled_sigmoid(p: float) -> float:
    """NAB's `2*sigmoid(-5p) - 1`, and -1 beyond three window widths past a window.

    >>> round(scaled_sigmoid(-1.0), 4), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.9866, 0.0, -1.0)
    """
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def probation_rows(n: int) -> int:
    """Rows at the start of a file that NAB does not score: `min(floor(0.15 n), 750)`.

    >>> probation_rows(4032), probation_rows(10000)
    (604, 750)
    """
    return min(int(math.floor(0.15 * n)), 750)


def _scored_windows(windows: Sequence[Window], probation: int) -> list[Window]:
    """Windows that reach past the probationary period (earlier ones can never be detected)."""
    return [(a, b) for a, b in sorted(windows) if b >= probation]


def nab_raw_score(detections: np.ndarray, windows: Sequence[Window], profile: Profile) -> float:
    """Raw NAB score of one file from a boolean detection per row (alert onsets for a band engine)."""
    n = len(detections)
    probation = probation_rows(n)
    scored = _scored_windows(windows, probation)
    best: dict[int, float] = {}
    false_total = 0.0
    max_tp = scaled_sigmoid(-1.0)
    for row in np.flatnonzero(np.asarray(detections, dtype=bool)):
        if row < probation:
            continue
        inside = [k for k, (a, b) in enumerate(scored) if a <= row <= b]
        if inside:
            a, b = scored[inside[0]]
            p = -(b - row) / max(b - a, 1)
            best.setdefault(inside[0], profile.tp * scaled_sigmoid(p) / max_tp)
            continue
        before = [(a, b) for a, b in scored if b < row]
        if not before:
            false_total -= profile.fp
            continue
        a, b = before[-1]
        p = (row - b) / max(b - a, 1)
        false_total += profile.fp * scaled_sigmoid(p)
    missed = len(scored) - len(best)
    return sum(best.values()) + false_total - profile.fn * missed


def nab_bounds(windows: Sequence[Window], n: int, profile: Profile) -> tuple[float, float]:
    """Raw scores of the null detector (never fires) and the perfect one (each window at its left edge)."""
    count = len(_scored_windows(windows, probation_rows(n)))
    return -profile.fn * count, profile.tp * count


def nab_normalised(files: Sequence[tuple[np.ndarray, Sequence[Window]]], profile: Profile) -> float:
    """Normalised NAB score over files: `100 (raw - null) / (perfect - null)`, raw summed over files."""
    raw = null = perfect = 0.0
    for detections, windows in files:
        raw += nab_raw_score(detections, windows, profile)
        lo, hi = nab_bounds(windows, len(detections), profile)
        null, perfect = null + lo, perfect + hi
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


@dataclass
class EventTally:
    """Event-level counts accumulated over series (no point-adjust: only alert onsets count)."""

    events: int = 0
    detected: int = 0
    false_alerts: int = 0
    delays: list[float] = field(default_factory=list)

    def add(self, other: EventTally) -> None:
        """Accumulate another series' counts into this one."""
        self.events += other.events
        self.detected += other.detected
        self.false_alerts += other.false_alerts
        self.delays.extend(other.delays)

    def precision(self) -> float:
        """Detected events over detected events plus false alerts."""
        total = self.detected + self.false_alerts
        return self.detected / total if total else float("nan")

    def recall(self) -> float:
        """Share of labelled events with an alert onset inside them."""
        return self.detected / self.events if self.events else float("nan")

    def f1(self) -> float:
        """Harmonic mean of event precision and recall."""
        if not self.events:
            return float("nan")
        if not self.detected:
            return 0.0
        p, r = self.precision(), self.recall()
        return 2 * p * r / (p + r)

    def median_delay(self) -> float:
        """Median seconds from event start to the first alert onset in it."""
        return float(np.median(self.delays)) if self.delays else float("nan")


def event_tally(
    timestamps: np.ndarray, onsets: np.ndarray, events: Sequence[tuple[int, int]], tolerance: float
) -> EventTally:
    """Match alert onsets to events given as `(start, end)` Unix seconds, each extended by `tolerance`.

    >>> t = np.arange(10) * 60
    >>> e = event_tally(t, np.isin(t, [120, 480]), [(60, 180)], tolerance=60)
    >>> e.detected, e.false_alerts, e.delays
    (1, 1, [60.0])
    """
    times = np.asarray(timestamps)[np.asarray(onsets, dtype=bool)]
    tally = EventTally(events=len(events))
    for start, end in events:
        hit = (times >= start) & (times <= end + tolerance)
        if hit.any():
            tally.detected += 1
            tally.delays.append(float(times[hit].min() - start))
    tally.false_alerts = len(false_onsets(times, events, tolerance))
    return tally


def false_onsets(times: np.ndarray, events: Sequence[tuple[int, int]], tolerance: float) -> np.ndarray:
    """The alert onset `times` that fall in no event (each extended by `tolerance`): false alerts.

    >>> false_onsets(np.array([120, 480]), [(60, 180)], tolerance=60).tolist()
    [480]
    """
    times = np.asarray(times)
    matched = np.zeros(len(times), dtype=bool)
    for start, end in events:
        matched |= (times >= start) & (times <= end + tolerance)
    return times[~matched]


def coverage(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[int, int]:
    """Points inside `[lower, upper]` and points judged (finite value and band)."""
    ok = np.isfinite(values) & np.isfinite(lower) & np.isfinite(upper)
    inside = ok & (values >= lower) & (values <= upper)
    return int(inside.sum()), int(ok.sum())


def width_over_iqr(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Median band width divided by the interquartile range of the series (NaN if the IQR is 0).

    >>> width_over_iqr(np.arange(5.0), np.zeros(5), np.full(5, 4.0))
    2.0
    """
    finite = values[np.isfinite(values)]
    width = (upper - lower)[np.isfinite(upper) & np.isfinite(lower)]
    if len(finite) < 2 or len(width) == 0:
        return float("nan")
    q1, q3 = np.percentile(finite, [25, 75])
    return float(np.median(width) / (q3 - q1)) if q3 > q1 else float("nan")
