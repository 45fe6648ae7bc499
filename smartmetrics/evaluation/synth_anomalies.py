"""Labelled anomalies for synthetic series: what kinds exist, where they go, and a pure injector.

Sizes are set to be clearly visible to an operator looking at the chart (several noise standard
deviations plus a share of the series' normal spread) but not trivially huge, so that detection
benchmarks measure something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartmetrics.engine.series import Series

ANOMALY_KINDS = (
    "spike", "dip", "level_shift", "variance_burst", "seasonality_break", "flatline", "drift",
)
_DURATION = {  # seconds (min, max); a spike or dip is always at least one step
    "spike": (60, 900), "dip": (300, 1800), "level_shift": (2 * 3600, 8 * 3600),
    "variance_burst": (3600, 4 * 3600), "seasonality_break": (86400, 86400),
    "flatline": (3600, 6 * 3600), "drift": (4 * 3600, 12 * 3600),
}
_KINDS_FOR = {
    "seasonal": ANOMALY_KINDS,
    "intermittent": ("spike", "level_shift", "variance_burst"),
    "constant": ("spike", "dip", "level_shift"),
    "noisy": ("spike", "level_shift", "flatline", "drift"),
    "regime": ("spike", "level_shift"),  # beyond every regime: inside them is normal by construction
}
_GENERIC = ("spike", "dip", "level_shift", "variance_burst", "flatline", "drift")


@dataclass(frozen=True)
class Anomaly:
    """One labelled incident: `start` and `end` are the Unix seconds of its first and last affected point."""

    kind: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "start": self.start, "end": self.end}


def inject_anomaly(values: np.ndarray, timestamps: np.ndarray, anomaly: Anomaly, size: float, *,
                   seed: int = 0) -> np.ndarray:
    """A copy of `values` with one anomaly of magnitude `size` (value units) applied inside its window.

    >>> v = inject_anomaly(np.zeros(5), np.arange(5) * 60, Anomaly("spike", 120, 180), 3.0)
    >>> v.tolist()
    [0.0, 0.0, 3.0, 3.0, 0.0]
    """
    out = np.asarray(values, dtype=np.float64).copy()
    inside = (timestamps >= anomaly.start) & (timestamps <= anomaly.end)
    idx = np.flatnonzero(inside)
    if len(idx) == 0:
        return out
    rng = np.random.default_rng([seed, idx[0], ANOMALY_KINDS.index(anomaly.kind)])
    window = out[idx]
    nonnegative = bool(np.nanmin(out) >= 0)
    if anomaly.kind in ("spike", "level_shift"):
        window = window + size
    elif anomaly.kind == "dip":
        window = window - size
    elif anomaly.kind == "variance_burst":
        window = window + rng.normal(0, size / 2, len(idx))
    elif anomaly.kind == "seasonality_break":
        low = np.nanpercentile(window, 10)
        window = low + 0.15 * (window - low)
    elif anomaly.kind == "flatline":
        before = out[idx[0] - 1] if idx[0] > 0 else window[0]
        window = np.full(len(idx), before)
    elif anomaly.kind == "drift":
        window = window + size * np.linspace(0, 1, len(idx))
    else:
        raise ValueError(f"unknown anomaly kind {anomaly.kind!r}; expected one of {', '.join(ANOMALY_KINDS)}")
    out[idx] = np.clip(window, 0, None) if nonnegative else window
    return out


def inject_series_anomaly(series: Series, anomaly: Anomaly, size: float, *, seed: int = 0) -> Series:
    """The same series with one anomaly injected (labels, grid and step unchanged)."""
    values = inject_anomaly(series.values, series.timestamps, anomaly, size, seed=seed)
    return Series(series.labels, series.timestamps, values, series.step, series.name, dict(series.meta))


def anomaly_size(values: np.ndarray, noise_sd: float, rng: np.random.Generator) -> float:
    """A visible but not huge magnitude: 4-7 noise sds plus 15-35% of the 5-95% spread."""
    finite = values[np.isfinite(values)]
    spread = float(np.percentile(finite, 95) - np.percentile(finite, 5)) if len(finite) else 0.0
    size = rng.uniform(4, 7) * noise_sd + rng.uniform(0.15, 0.35) * spread
    nonzero = finite[finite != 0]
    if len(nonzero) and np.mean(finite == 0) > 0.3:  # sparse counters: a burst several times the usual
        size = max(size, rng.uniform(3, 6) * float(np.median(np.abs(nonzero))))
    if size <= 0:  # flat gauges: a change of a fifth to a half of the value (or one unit at zero)
        size = rng.uniform(0.2, 0.5) * max(abs(float(np.median(finite))) if len(finite) else 1.0, 1.0)
    return float(size)


STATIONARY = ("stable", "noisy", "intermittent")  # one distribution all along: its tails are its normal
BEYOND_TAILS = ("spike", "dip", "variance_burst")  # short anomalies judged against those tails


def tail_size(values: np.ndarray, rng: np.random.Generator) -> float:
    """For a series whose values come from one distribution all along: 1.1 to 1.5 times its 0.1%..99.9%
    span, so a short anomaly leaves what the clean history shows. Smaller, it would be a label no
    detector can tell from the series' own heavy tail (a lognormal's, a sparse counter's largest
    bursts): an ambiguous label caps every detector's F1 below 1."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0
    low, high = np.quantile(finite, [0.001, 0.999])
    return float(rng.uniform(1.1, 1.5) * (high - low))


def regime_size(values: np.ndarray, rng: np.random.Generator) -> float:
    """For a series switching between levels: enough to leave every level it has, from any of them
    (1.3 to 1.8 times the distance between the lowest and the highest)."""
    finite = values[np.isfinite(values)]
    span = float(np.ptp(finite)) if len(finite) else 1.0
    return rng.uniform(1.3, 1.8) * (span or 1.0)


def plan_anomalies(kind: str, periods: tuple[int, ...], timestamps: np.ndarray, step: int, noise_sd: float,
                   values: np.ndarray, rng: np.random.Generator) -> list[tuple[Anomaly, float]]:
    """One to three non-overlapping anomalies suited to the curve kind, each with its magnitude.

    They start after the first 15% of the history so that every detector has some clean past.
    """
    kinds = _KINDS_FOR.get(kind, _GENERIC)
    if 86400 not in periods:
        kinds = tuple(k for k in kinds if k != "seasonality_break")
    if np.nanmax(values) <= 0:  # a dip below zero is clipped away: nothing to see, nothing to label
        kinds = tuple(k for k in kinds if k != "dip")
    n, taken, plans = len(timestamps), np.zeros(len(timestamps), bool), []
    for _ in range(int(rng.integers(1, 4))):
        what = str(rng.choice(kinds))
        low, high = _DURATION[what]
        width = max(1, int(rng.uniform(low, high) // step))
        if width >= 0.5 * n:
            continue
        for _attempt in range(20):
            at = int(rng.integers(int(0.15 * n), n - width))
            if what == "seasonality_break":
                at = at - (at * step + int(timestamps[0])) % 86400 // step  # whole UTC day
            if at >= 0 and not taken[max(0, at - width):at + 2 * width].any():
                taken[at:at + width] = True
                anomaly = Anomaly(what, int(timestamps[at]), int(timestamps[min(at + width, n) - 1]))
                size = regime_size(values, rng) if kind == "regime" else anomaly_size(values, noise_sd, rng)
                if kind in STATIONARY and what in BEYOND_TAILS:
                    size = max(size, tail_size(values, rng))
                plans.append((anomaly, size))
                break
    return sorted(plans, key=lambda p: p[0].start)
