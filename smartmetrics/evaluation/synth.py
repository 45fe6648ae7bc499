"""Seeded synthetic Prometheus-like series with ground truth: curve type, periods and labelled anomalies.

Every later quality benchmark (classification, event F1, false alerts on clean series, band coverage)
draws its data from here, so each generator mimics a real metric: inference QPS and latency with
daily/weekly cycles, `rate()` of counters that reset, latency quantiles from histogram buckets,
CPU-like gauges, disk growth, sparse error rates and ratios with small blips, low-count rates, deploy
level shifts, GPU batch jobs and autoscaled replicas switching between regimes, heavy-tailed gauges,
flat gauges. Timestamps are UTC midnight-aligned; gaps (missing scrapes) are NaN; values are
quantised as exporters and `rate()` make them. Same arguments, same bytes.

Seeds are split: `TUNING_SEEDS` are the only ones any threshold or constant may be chosen on;
`TEST_SEEDS` are reported. Labels are unambiguous: what a corpus does not label is either normal by
construction or a benign change it announces (`LabelledSeries.changes`, replayed as release markers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from smartmetrics.engine.series import Series
from smartmetrics.evaluation.synth_anomalies import ANOMALY_KINDS, Anomaly, inject_anomaly, plan_anomalies

__all__ = [
    "ANOMALY_KINDS",
    "CURVE_KINDS",
    "NOISE_LEVELS",
    "TEST_SEEDS",
    "TUNING_SEEDS",
    "Anomaly",
    "LabelledSeries",
    "inject_anomaly",
    "make_corpus",
    "make_series",
]

CURVE_KINDS = (
    "seasonal", "stable", "trending", "intermittent", "level_shift", "noisy", "regime", "constant",
    "insufficient",
)
TUNING_SEEDS = (0, 1)  # thresholds and constants are chosen on these corpora only...
TEST_SEEDS = (2, 3, 4)  # ...and quality is reported on these
NOISE_LEVELS = ("low", "medium", "high")
_NOISE = {"low": 0.02, "medium": 0.05, "high": 0.10}  # noise sd relative to the series' level
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY, WEEK = 86400, 604800


@dataclass(frozen=True)
class LabelledSeries:
    """A generated `Series` with the truth a benchmark scores against."""

    series: Series
    curve_type: str
    periods: tuple[int, ...]
    anomalies: tuple[Anomaly, ...]
    noise: str
    variant: str = ""
    changes: tuple[int, ...] = ()  # Unix seconds of the unlabelled benign changes: normal, never scored


@dataclass
class _Draft:
    """A clean signal under construction: values plus what the generator knows about it."""

    values: np.ndarray
    periods: tuple[int, ...] = ()
    noise_sd: float = 0.0
    variant: str = ""
    metric: str = "value"
    quantum: float = 0.0
    changes: tuple[int, ...] = ()  # indices where a benign change starts (a deploy, an operator)


def _daily_shape(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth daily cycle in [-1, 1] with a random peak hour and an optional second hump."""
    phase = 2 * np.pi * (t % DAY) / DAY
    peak = rng.uniform(0, 2 * np.pi)
    shape = np.cos(phase - peak) + rng.uniform(0, 0.4) * np.cos(2 * (phase - peak) + rng.uniform(-1, 1))
    return shape / np.max(np.abs(shape))


def _weekly_factor(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A multiplier that drops on Saturday and Sunday, with two-hour ramps at the edges."""
    day_of_week = ((t // DAY) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    weekend = (day_of_week >= 5).astype(float)
    width = max(1, int(7200 // (t[1] - t[0])))
    ramp = np.convolve(weekend, np.ones(width) / width, mode="same") if len(t) > width else weekend
    return 1.0 - rng.uniform(0.3, 0.5) * ramp


def _seasonal(t: np.ndarray, level: float, sd: float, days: float, rng: np.random.Generator) -> _Draft:
    options = ["daily", "daily", "cron", "counter", "histogram"] + (
        ["weekly", "daily+weekly", "daily+weekly"] if days >= 14 else [])
    variant = str(rng.choice(options))  # a weekly cycle is only knowable (and labelled) with two weeks
    if variant == "counter":
        return _counter_rate(t, level, rng)
    if variant == "histogram":
        return _histogram_quantile(t, rng)
    amp = rng.uniform(0.3, 0.7)
    if variant == "cron":
        step = int(t[1] - t[0])
        period = int(rng.choice([p for p in (3600, 4 * 3600, 6 * 3600, 12 * 3600) if p >= 4 * step] or [DAY]))
        duty = (t % period) < rng.uniform(0.2, 0.4) * period
        clean, periods = level * (1 + amp * duty.astype(float)), (period,)
    elif variant == "weekly":
        clean, periods = level * _weekly_factor(t, rng), (WEEK,)
    else:
        clean, periods = level * (1 + amp * _daily_shape(t, rng)), (DAY,)
        if variant == "daily+weekly":
            clean, periods = clean * _weekly_factor(t, rng), (DAY, WEEK)
    if rng.random() < 0.4:
        variant += "+trend"
        clean = clean + level * rng.uniform(0.2, 0.6) * rng.choice([-0.5, 1.0]) * _ramp(t)
    metric = str(rng.choice(["inference_requests_per_second", "tokens_per_second", "request_latency_seconds"]))
    return _Draft(clean + rng.normal(0, sd, len(t)), periods, sd, variant, metric)


def _counter_rate(t: np.ndarray, level: float, rng: np.random.Generator) -> _Draft:
    """`rate(requests_total[5m])` of a counter scraped every 15 s that restarts from zero a few times a
    day (pod restarts), as Prometheus computes it: per-scrape increases, a drop taken as a reset and
    counted from zero, summed over the window. At low rates the result is visibly quantised."""
    step, scrape = int(t[1] - t[0]), 15
    rate = level * rng.uniform(0.002, 0.05) * (1 + rng.uniform(0.3, 0.7) * _daily_shape(t, rng))
    per_scrape = np.repeat(np.clip(rate, 0, None) * scrape, step // scrape)
    counter = np.cumsum(rng.poisson(per_scrape)).astype(np.float64)
    resets = np.sort(rng.choice(len(counter), size=int(rng.integers(0, 4)) * max(1, len(t) * step // DAY),
                                replace=False))
    for at in resets:  # the process restarts: the counter starts again from zero
        counter[at:] -= counter[at - 1] if at else 0.0
    increase = np.diff(counter, prepend=0.0)
    increase = np.where(increase < 0, counter, increase)  # Prometheus' reset correction
    per_point = increase.reshape(len(t), step // scrape).sum(axis=1)
    return _Draft(per_point / step, (DAY,), float(np.mean(np.sqrt(per_scrape))) / step, "counter",
                  "inference_requests_per_second", quantum=1.0 / step)


BUCKETS = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])


def _histogram_quantile(t: np.ndarray, rng: np.random.Generator) -> _Draft:
    """`histogram_quantile(0.99, rate(latency_bucket[5m]))`: request latencies (lognormal, slower at
    the daily peak) counted into the default buckets, the quantile interpolated linearly within its
    bucket, as Prometheus does; values stick to bucket edges."""
    requests = rng.uniform(200, 3000)  # per point
    load = 1 + rng.uniform(0.3, 0.7) * _daily_shape(t, rng)
    median = rng.uniform(0.02, 0.3) * (1 + rng.uniform(0.2, 0.6) * (load - 1))
    sigma = rng.uniform(0.4, 0.9)
    cdf = 0.5 * (1 + _erf((np.log(BUCKETS)[None, :] - np.log(median)[:, None]) / (sigma * np.sqrt(2))))
    counts = rng.poisson(requests * load[:, None] * np.diff(np.c_[np.zeros(len(t)), cdf, np.ones(len(t))], axis=1))
    cumulative = np.cumsum(counts, axis=1)[:, :-1].astype(np.float64)  # le buckets; +Inf is the total
    total = cumulative[:, -1] + counts[:, -1]
    rank = 0.99 * total
    values = np.empty(len(t))
    for i in range(len(t)):
        b = int(np.searchsorted(cumulative[i], rank[i]))
        if b >= len(BUCKETS):
            values[i] = BUCKETS[-1]  # beyond the last finite bucket: its upper bound
            continue
        lo_edge, lo_count = (0.0, 0.0) if b == 0 else (BUCKETS[b - 1], cumulative[i, b - 1])
        inside = cumulative[i, b] - lo_count
        values[i] = lo_edge + (BUCKETS[b] - lo_edge) * ((rank[i] - lo_count) / inside if inside else 1.0)
    noise = float(np.median(np.abs(np.diff(values)))) or 1e-3
    return _Draft(values, (DAY,), noise, "histogram", "request_latency_seconds_p99")


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


def _ramp(t: np.ndarray) -> np.ndarray:
    """0 at the first timestamp rising linearly to 1 at the last."""
    return (t - t[0]) / max(float(t[-1] - t[0]), 1.0)


def _ar1(n: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Mean-zero AR(1) noise whose marginal standard deviation is `sd`."""
    phi = rng.uniform(0.3, 0.9)
    shocks = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    shocks[0] = rng.normal(0, sd)
    return lfilter([1.0], [1.0, -phi], shocks)


def _stable(t: np.ndarray, level: float, sd: float, rng: np.random.Generator) -> _Draft:
    metric = str(rng.choice(["cpu_utilisation_percent", "memory_used_bytes", "gpu_temperature_celsius"]))
    return _Draft(level + _ar1(len(t), sd, rng), (), sd, "ar1", metric)


def _trending(t: np.ndarray, level: float, sd: float, rng: np.random.Generator) -> _Draft:
    growth = rng.uniform(0.5, 2.0) * level if rng.random() < 0.7 else -rng.uniform(0.3, 0.6) * level
    growth = np.sign(growth) * max(abs(growth), 10 * sd)
    shape = _ramp(t) ** rng.uniform(1.0, 1.5)
    return _Draft(level + growth * shape + _ar1(len(t), sd, rng), (), sd, "growth", "disk_used_bytes")


def _level_shift(t: np.ndarray, level: float, sd: float, rng: np.random.Generator) -> _Draft:
    n = len(t)
    values = level + _ar1(n, sd, rng)
    days = n * (t[1] - t[0]) / DAY
    count = int(rng.integers(1, 1 + min(3, max(1, int(days / 4.5)))))  # shifts stay well apart
    slot = 0.7 * n / count
    offset, cuts = 0.0, []
    for k in range(count):  # one deploy per slot, at least a quarter of the history or 2.3 days apart
        cut = int(0.15 * n + slot * (k + rng.uniform(0.35, 0.65)))
        direction = 1.0 if offset <= 0 else float(rng.choice([-1.0, 1.0]))
        size = direction * max(rng.uniform(0.3, 0.8) * level, 8 * sd)
        values[cut:] += size
        offset += size
        cuts.append(cut)
    return _Draft(values, (), sd, f"{count} shifts", "process_resident_memory_bytes", changes=tuple(cuts))


def _noisy(t: np.ndarray, level: float, sd: float, rng: np.random.Generator) -> _Draft:
    n = len(t)
    if rng.random() < 0.5:
        return _Draft(level * rng.lognormal(0, rng.uniform(0.7, 1.0), n), (), level, "lognormal", "job_duration")
    busy, state, i = np.zeros(n), bool(rng.random() < 0.5), 0
    while i < n:  # alternating idle/busy runs of 10 minutes to 4 hours, levels blurred by heavy noise
        run = int(np.exp(rng.uniform(np.log(600), np.log(4 * 3600))) // (t[1] - t[0])) + 1
        busy[i:i + run] = state
        state, i = not state, i + run
    idle, high = level * rng.uniform(0.2, 0.4), level * rng.uniform(0.6, 0.9)
    values = idle + (high - idle) * busy + rng.normal(0, max(4 * sd, 0.15 * level), n)
    return _Draft(np.clip(values, 0, None), (), max(4 * sd, 0.15 * level), "bursty", "gpu_utilisation")


def _regime(t: np.ndarray, level: float, sd: float, rng: np.random.Generator) -> _Draft:
    """Levels far apart that the series switches between at random times: an idle GPU's batch jobs
    (minutes to an hour or two, a few a day), a busy/idle queue, an autoscaler's replica steps."""
    n, step = len(t), int(t[1] - t[0])
    variant = str(rng.choice(["batch", "queue", "autoscaled"]))
    noise = sd * rng.uniform(0.1, 0.5)
    if variant == "autoscaled":  # replicas between a floor and a ceiling, hours at each count
        floor = int(rng.integers(1, 4))
        top = floor + int(rng.integers(2, 5))
        counts = np.empty(n)
        # the first hours scale up to the ceiling and back twice (at most 18 h): every count the
        # series later takes is one it has shown again and again, as with the batch jobs below; a
        # count first reached on day three is what the regime alert exists for, no unambiguous label
        tour = [*range(floor, top), *range(top, floor, -1)] * 2
        i = 0
        for current in tour:
            run = int(rng.uniform(1800, 3600) // step) + 1
            counts[i:i + run] = current
            i += run
        current = floor
        while i < n:
            run = int(rng.uniform(1800, 6 * 3600) // step) + 1
            counts[i:i + run] = current
            current = int(np.clip(current + rng.choice([-1, 1]), floor, top))
            i += run
        return _Draft(counts, (), 0.0, variant, "kube_deployment_status_replicas", quantum=1.0)
    idle, busy = level * rng.uniform(0.05, 0.3), level * rng.uniform(1.0, 3.0)
    on = np.zeros(n, bool)
    if variant == "batch":
        jobs = rng.poisson(rng.uniform(0.7, 3.0) * n * step / DAY)
        # three jobs in the first 22 hours: a detector judges from the second day on, and a regime
        # it has seen again and again is normal; one first seen on day three is no unambiguous label
        first_day = rng.integers(0, max(1, min(n, 22 * 3600 // step)), 3)
        for start in np.r_[first_day, rng.integers(0, n, max(jobs, 3))]:
            on[start:start + int(rng.uniform(600, 2 * 3600) // step) + 1] = True
    else:
        state, i = bool(rng.random() < 0.5), 0
        while i < n:
            run = int(np.exp(rng.uniform(np.log(900), np.log(4 * 3600))) // step) + 1
            on[i:i + run], state, i = state, not state, i + run
    values = np.where(on, busy, idle) + rng.normal(0, noise, n)
    return _Draft(np.clip(values, 0, None), (), noise, variant, "gpu_power_watts")


def _intermittent(t: np.ndarray, level: float, noise: str, step: int, rng: np.random.Generator) -> _Draft:
    n = len(t)
    variant = str(rng.choice(["errors", "errors", "blips", "low_count"]))
    if variant == "blips":  # an error ratio: zero but for small isolated blips
        blips = rng.random(n) < rng.uniform(0.002, 0.03)
        sizes = rng.uniform(0.0005, 0.002) * rng.uniform(1, 5, n)
        return _Draft(np.where(blips, sizes, 0.0), (), 0.0, variant, "http_errors_ratio", quantum=1e-5)
    if variant == "low_count":  # rate() of a rarely incremented counter: multiples of 1/window
        window = 300
        counts = rng.poisson(rng.uniform(0.05, 0.6) * step / window, n)
        return _Draft(counts / window, (), 0.0, variant, "model_reloads_per_second", quantum=1.0 / window)
    p = rng.uniform(0.03, 0.25)
    starts = rng.random(n) < p
    counts = starts * rng.poisson({"low": 1.5, "medium": 3, "high": 8}[noise], n) + starts
    scale = max(1.0, float(np.round(level / 100)))
    return _Draft(counts * scale / step, (), 0.0, variant, "http_errors_per_second", quantum=scale / step)


def _constant(t: np.ndarray, level: float, noise: str, rng: np.random.Generator) -> _Draft:
    value = float(rng.choice([0.0, 1.0, 3.0, 8.0, round(level)]))
    return _Draft(np.full(len(t), value), (), 0.0, "gauge", "kube_deployment_replicas")


def _clean(kind: str, t: np.ndarray, step: int, days: float, noise: str, scale: float,
           rng: np.random.Generator) -> _Draft:
    """Dispatch to the generator of one curve kind."""
    level = scale * float(np.exp(rng.uniform(np.log(20), np.log(500))))
    sd = _NOISE[noise] * level
    if kind == "seasonal":
        return _seasonal(t, level, sd * 1.2, days, rng)
    if kind == "stable":
        return _stable(t, level, sd, rng)
    if kind == "trending":
        return _trending(t, level, sd, rng)
    if kind == "level_shift":
        return _level_shift(t, level, sd, rng)
    if kind == "noisy":
        return _noisy(t, level, sd, rng)
    if kind == "regime":
        return _regime(t, level, sd, rng)
    if kind == "intermittent":
        return _intermittent(t, level, noise, step, rng)
    if kind == "constant":
        return _constant(t, level, noise, rng)
    raise ValueError(f"unknown curve kind {kind!r}; expected one of {', '.join(CURVE_KINDS)}")


def _quantise(values: np.ndarray, quantum: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Round to a resolution two or three digits below the typical magnitude, as exporters do."""
    if quantum <= 0:
        typical = float(np.nanmedian(np.abs(values))) or 1.0
        quantum = 10.0 ** (np.floor(np.log10(typical)) - int(rng.integers(2, 4)))
    return np.round(values / quantum) * quantum, quantum


def _drop_scrapes(values: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
    """Missing scrapes: scattered single points and, sometimes, one outage of 15 minutes to 3 hours."""
    out = values.copy()
    out[rng.random(len(out)) < rng.uniform(0, 0.01)] = np.nan
    if rng.random() < 0.3 and len(out) > 10:
        width = max(1, int(rng.uniform(900, 3 * 3600) // step))
        at = int(rng.integers(0, max(1, len(out) - width)))
        out[at:at + width] = np.nan
    return out


def make_series(kind: str, *, step: int = 300, days: float = 14, seed: int = 0, noise: str = "medium",
                anomalies: bool = False, scale: float = 1.0) -> LabelledSeries:
    """One synthetic series of curve type `kind` with its ground truth, deterministic in all arguments.

    `insufficient` series are shorter than a day or almost empty; they never carry anomalies.
    """
    if noise not in _NOISE:
        raise ValueError(f"noise must be one of {', '.join(NOISE_LEVELS)}, got {noise!r}")
    rng = np.random.default_rng([seed, CURVE_KINDS.index(kind) if kind in CURVE_KINDS else 99])
    base_kind, n_days = kind, days
    if kind == "insufficient":
        base_kind = str(rng.choice(["seasonal", "stable", "noisy"]))
        n_days = days if rng.random() < 0.3 else rng.uniform(0.1, 0.9)
    n = max(2, int(round(n_days * DAY / step)))
    start = _EPOCH + int(rng.integers(0, 60)) * DAY
    t = start + np.arange(n, dtype=np.int64) * step
    draft = _clean(base_kind, t, step, n_days, noise, scale, rng)
    values, quantum = _quantise(draft.values, draft.quantum, rng)
    labelled: tuple[Anomaly, ...] = ()
    if anomalies and kind != "insufficient":
        plans = plan_anomalies(kind, draft.periods, t, step, draft.noise_sd, values, rng)
        for anomaly, size in plans:
            values = inject_anomaly(values, t, anomaly, size, seed=seed)
        labelled = tuple(a for a, _ in plans)
        values, _ = _quantise(values, quantum, rng)
    values = _drop_scrapes(values, step, rng)
    if kind == "insufficient" and n_days >= 1:  # a long history with only a handful of scrapes
        keep = np.zeros(n, bool)
        keep[rng.choice(n, size=min(n, int(rng.integers(5, 40))), replace=False)] = True
        values = np.where(keep, values, np.nan)
    labels = {"job": draft.metric, "tenant": f"tenant-{int(scale)}", "instance": f"{kind}-{seed}"}
    series = Series(labels, t, values, step, name=draft.metric)
    truth_periods = draft.periods if kind == "seasonal" else ()
    changes = tuple(int(t[i]) for i in draft.changes) if kind != "insufficient" else ()
    return LabelledSeries(series, kind, truth_periods, labelled, noise, draft.variant, changes)


def make_corpus(n: int, *, step: int = 300, days: float = 14, seed: int = 0,
                kinds: tuple[str, ...] = CURVE_KINDS, noises: tuple[str, ...] = NOISE_LEVELS,
                scales: tuple[float, ...] = (1.0, 1000.0)) -> list[LabelledSeries]:
    """`n` series cycling through every kind, noise level, with and without anomalies, and tenant scale."""
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        noise = noises[(i // len(kinds)) % len(noises)]
        with_anomalies = (i // (len(kinds) * len(noises))) % 2 == 0
        scale = scales[(i // (2 * len(kinds) * len(noises))) % len(scales)]
        out.append(make_series(kind, step=step, days=days, seed=seed * 1_000_003 + i, noise=noise,
                               anomalies=with_anomalies, scale=scale))
    return out
