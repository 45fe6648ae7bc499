"""Stuck values: a series that normally changes at almost every step and then stops changing.

A frozen exporter, a stalled counter behind `rate()` or a wedged GPU reading repeats its last value,
and that value sits inside any band. The fit learns from the history how long the series has ever
held one value and sets `stuck_after` (seconds) well beyond it; holding a value that long alerts.
Series that often repeat themselves (sparse counters, gauges, quantised slow curves) get none.
Missing scrapes neither change nor hold a value: time is measured between the observed samples,
as Prometheus' `changes()` sees them.
"""

from __future__ import annotations

import numpy as np

MIN_CHANGING = 0.9  # share of consecutive samples that must differ for a series to be "always moving"
MARGIN = 2.0  # stuck after this many times the second-longest hold seen in the history...
MIN_STEPS = 6  # ...and never sooner than this many steps
MAX_SECONDS = 4 * 3600  # a series that needs longer than this to look stuck gets no stuck alert
MIN_DAYS = 1.0  # history needed to know how long the series can hold a value


def held_seconds(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per point, seconds since the value was last different (0 where it just changed; NaN in gaps).

    >>> held_seconds(np.arange(6) * 60, np.array([1.0, 2.0, 2.0, np.nan, 2.0, 3.0])).tolist()
    [0.0, 0.0, 60.0, nan, 180.0, 0.0]
    """
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), np.nan)
    ok = np.flatnonzero(np.isfinite(v))
    if len(ok) == 0:
        return out
    seen = v[ok]
    new_run = np.concatenate(([True], seen[1:] != seen[:-1]))
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(seen)), 0))
    out[ok] = t[ok] - t[ok][run_start]
    return out


def stuck_after(timestamps: np.ndarray, values: np.ndarray, step: int) -> int:
    """Seconds without a change after which the series counts as stuck; 0 when it should never.

    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(0, 2 * 86400, 300)
    >>> stuck_after(t, np.round(100 + rng.normal(0, 5, len(t)), 1), 300)
    1800
    >>> stuck_after(t, np.where(rng.random(len(t)) < 0.2, 1.0, 0.0), 300)
    0
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if ok.sum() * step < MIN_DAYS * 86400 * 0.8:
        return 0
    seen = v[ok]
    changed = seen[1:] != seen[:-1]
    if np.mean(changed) < MIN_CHANGING:
        return 0
    held = held_seconds(np.asarray(timestamps)[ok], seen)
    run_ends = np.concatenate((changed, [True]))
    holds = np.sort(held[run_ends])
    longest = float(holds[-2] if len(holds) > 1 else holds[-1])  # one past incident must not raise it
    after = max(MARGIN * (longest + step), MIN_STEPS * step)
    return 0 if after > MAX_SECONDS else int(after)
