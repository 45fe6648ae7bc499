"""One retrain of one baseline: fetch its series, fit each in a worker pool, merge, store.

Used by the daemon's schedule and by `smartmetrics fit`. A series whose fit raises is counted by
reason and skipped (its previous band, if any, stays); a fetch that fails leaves the whole previous
state in place. The per-series fit itself is `ensemble.fit_series`, a pure function of
(series, settings), so the pool can be processes now and a cluster later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartmetrics.config import Baseline, Config
from smartmetrics.ensemble import FitSettings, FittedSeries, fit_series, walk_forward_fit
from smartmetrics.releases import release_onsets, releases_for
from smartmetrics.series import Series, format_labels
from smartmetrics.source import FetchResult, SourceError, fetch_baseline
from smartmetrics.store import BaselineState, SeriesBand

log = logging.getLogger(__name__)
FAR = 1000.0  # spans of the history beyond which a band edge is no band


def forecast_margin(horizon: float) -> float:
    """Extra forecast beyond the horizon so a late or failed retrain does not leave a gap.

    >>> forecast_margin(86400) / 3600
    6.0
    """
    return max(0.25 * horizon, 3600.0)


def fit_settings(baseline: Baseline, alias: str = "") -> FitSettings:
    """The pure fit's settings for a configured baseline (its `alias` read for what the metric is)."""
    marked = {"settle": baseline.releases.settle, "absorb": baseline.releases.absorb} if baseline.releases else {}
    return FitSettings(
        sensitivity=baseline.sensitivity,
        curve_type=baseline.curve_type,
        models=tuple(baseline.models) if baseline.models else None,
        horizon=int(baseline.horizon + forecast_margin(baseline.horizon)),
        range=baseline.range, hints=f"{alias} {baseline.expr}",
        **marked,
    )


def baseline_fit(baseline: Baseline, sensitivity: str | float | None = None,
                 releases: Collection[int] = (), alias: str = "") -> Callable[[Series, int], FittedSeries]:
    """The daemon's fit of a configured baseline as a walk-forward fit function `(train, horizon)`, at
    another `sensitivity` if given; each training window is told the `releases` up to its end."""
    settings = fit_settings(baseline, alias)
    if sensitivity is not None:
        settings = dataclasses.replace(settings, sensitivity=sensitivity)
    return walk_forward_fit(settings, tuple(releases))


def series_releases(
    config: Config, alias: str, series: Collection[Series], since: float, now: float,
    fetch: Callable[..., FetchResult] = fetch_baseline,
) -> dict[str, tuple[int, ...]]:
    """Each series' release times in (since, now] by key, from the baseline's release markers matched
    on its `releases.match` labels; empty when the baseline has no `releases`. Raises `SourceError`."""
    baseline = config.baselines[alias]
    if baseline.releases is None or not series:
        return {}
    markers = fetch_release_markers(config, alias, since, now, fetch)
    return {s.key: tuple(releases_for(s.labels, markers, baseline.releases.match)) for s in series}


def fetch_release_markers(
    config: Config, alias: str, since: float, now: float, fetch: Callable[..., FetchResult] = fetch_baseline,
) -> list[tuple[dict[str, str], int]]:
    """(marker labels, release time) for every release of a baseline's `releases.expr` in (since, now]."""
    baseline = config.baselines[alias]
    if baseline.releases is None:
        return []
    markers = baseline.model_copy(update={"expr": baseline.releases.expr, "max_series": 10000,
                                          "history": max(now - since, 2 * baseline.step)})
    found = fetch(config.model_copy(update={"baselines": {alias: markers}}), alias, end=now).series
    return [(s.labels, t) for s in found for t in release_onsets(s.timestamps, s.values) if t > since]


def fit_fingerprint(baseline: Baseline) -> str:
    """A digest of everything in a baseline's config that changes its fit (not its alerting or releases)."""
    fields = baseline.model_dump(mode="json", exclude={"alert", "releases"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def json_safe(value: Any) -> Any:
    """Metadata made JSON-safe: numpy scalars to Python, NaN/±Inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def lead_model(fitted: FittedSeries) -> str:
    """The member with the largest weight (what `smartmetrics_series{model=...}` reports)."""
    members = [m for m in fitted.members if m.get("weight", 0) > 0] or fitted.members
    return max(members, key=lambda m: m.get("weight", 0))["name"] if members else "none"


def band_from_fitted(fitted: FittedSeries, fitted_at: float) -> SeriesBand:
    """The stored form of a fit: its forecast table and the metadata an operator wants to see."""
    meta = {
        "fitted_at": fitted_at,
        "curve_type": fitted.classification.get("curve_type"),
        "classification": fitted.classification,
        "model": lead_model(fitted),
        "members": fitted.members,
        "coverage": fitted.coverage,
        "training": fitted.training,
        "data_start": fitted.data_start,
        "data_end": fitted.data_end,
    }
    # The table starts one step after the data; the daemon exports from the moment the fit lands, so
    # the first forecast point also stands for the step before it (from the last observed point on).
    if len(fitted.timestamps) == 0:
        raise ValueError("fit returned an empty forecast table")
    start = int(fitted.timestamps[0]) - int(fitted.step)
    cols = [np.concatenate([a[:1], a]) for a in (fitted.yhat, fitted.lower, fitted.upper)]
    return SeriesBand(dict(fitted.labels), start, int(fitted.step), *cols, meta=json_safe(meta))


@dataclass
class RetrainOutcome:
    """What one retrain of one baseline did, for logs, self-metrics and the `fit` summary table."""

    alias: str
    state: BaselineState | None = None
    fetched: int = 0
    fitted: int = 0
    dropped: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    coverage: list[float] = field(default_factory=list)  # per series, held out (`bands.held_out_coverage`)
    nominal: float | None = None
    fetch_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    release_error: str | None = None  # the release markers could not be read: fitted without them


def fit_all(
    series: list[Series], settings: FitSettings, executor: Executor | None,
    on_done: Callable[[], None] | None = None, releases: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[list[FittedSeries], Counter[str]]:
    """Fit every series (told its `releases`, by series key), in the executor when given; failures
    counted by exception type."""
    fitted: list[FittedSeries] = []
    failures: Counter[str] = Counter()
    known = releases or {}
    if executor is None:
        futures: list[Future] = []
        for s in series:
            future: Future = Future()
            try:
                future.set_result(fit_series(s, settings, known.get(s.key, ())))
            except Exception as exc:  # one series never stops the others
                future.set_exception(exc)
            futures.append(future)
    else:
        futures = [executor.submit(fit_series, s, settings, known.get(s.key, ())) for s in series]
    of = dict(zip(futures, series))
    for future in _as_done(futures):
        try:
            result = future.result()
        except Exception as exc:
            failures[type(exc).__name__] += 1
            log.warning("fit failed: %s: %s", type(exc).__name__, exc)
        else:
            problem = band_problem(result, of[future])
            if problem is None:
                fitted.append(result)
            else:  # counted as a failed fit; the series keeps the band it had
                failures["InsaneBand"] += 1
                log.warning("fit of %s rejected: %s", format_labels(result.labels), problem)
        if on_done is not None:
            on_done()
    return fitted, failures


def _as_done(futures: list[Future]) -> Iterator[Future]:
    """Each future as it finishes, cancelled ones included: a pool shut down with `cancel_futures`
    cancels the queued fits without notifying `as_completed`, which would wait for them forever."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        cancelled = {f for f in pending if f.cancelled()}
        pending -= cancelled
        yield from done | cancelled


def band_problem(fitted: FittedSeries, series: Series) -> str | None:
    """Why a fitted band must not replace the one served, or None when it is sane: every edge finite
    (unless the fit withheld the band), lower <= yhat <= upper, no edge orders of magnitude beyond
    anything the series showed, and some width where the series varies.

    >>> from smartmetrics.ensemble import FittedSeries
    >>> s = Series({}, np.arange(3) * 60, np.array([1.0, 2.0, 3.0]), 60)
    >>> f = FittedSeries({}, 60, {}, [], {}, np.arange(2), np.zeros(2), np.full(2, -5e-11), np.full(2, 5e-11), 0, 120)
    >>> band_problem(f, s)  # what NaN source values once stored
    'a band of zero width on a series that varies'
    >>> flat = Series({}, np.arange(3) * 60, np.ones(3), 60)  # a flat series' usual band is sane
    >>> band_problem(FittedSeries({}, 60, {}, [], {}, np.arange(2), np.ones(2), np.full(2, 0.95),
    ...                           np.full(2, 1.05), 0, 120), flat) is None
    True
    """
    if fitted.training.get("withheld"):
        return None
    yhat, lower, upper = fitted.yhat, fitted.lower, fitted.upper
    if not (np.isfinite(yhat).all() and np.isfinite(lower).all() and np.isfinite(upper).all()):
        return "the band is not finite"
    slack = 1e-9 * (1.0 + np.abs(yhat))
    if np.any(lower > yhat + slack):
        return "lower edge above yhat"
    if np.any(upper < yhat - slack):
        return "upper edge below yhat"
    seen = series.values[np.isfinite(series.values)]
    if len(seen) == 0:
        return None
    span, size = float(np.ptp(seen)), float(np.max(np.abs(seen)))
    reach = size + FAR * max(span, 1e-3 * size, 1.0)  # a flat series has no span: its size, or 1, stands in
    if np.any(np.abs(lower) > reach) or np.any(np.abs(upper) > reach):
        return f"edges beyond {reach:.3g}, orders of magnitude past anything the series showed"
    if span > 0 and np.all(upper - lower <= 1e-9 * max(span, size)):
        return "a band of zero width on a series that varies"
    return None


def retrain_baseline(
    config: Config,
    alias: str,
    previous: BaselineState | None,
    executor: Executor | None,
    now: float,
    *,
    only: Collection[str] | None = None,
    drop: Collection[str] = (),
    fetch: Callable[..., FetchResult] = fetch_baseline,
    on_progress: Callable[[int, int], None] | None = None,
) -> RetrainOutcome:
    """Fetch and fit a baseline (or only the series whose keys are in `only`) and merge with `previous`."""
    outcome = RetrainOutcome(alias)
    t0 = time.monotonic()
    try:
        result = fetch(config, alias, end=now)
    except SourceError as exc:
        outcome.error, outcome.seconds = str(exc), time.monotonic() - t0
        return outcome
    outcome.fetch_seconds = time.monotonic() - t0
    series = [s for s in result.series if only is None or s.key in only]
    outcome.fetched, outcome.dropped = len(series), result.dropped
    empty = [s for s in series if s.observed == 0]
    if empty:  # nothing to learn from (only gaps, or values no metric can take): the bands they had stay
        outcome.failures["NoData"] += len(empty)
        log.warning("%s: %d series returned no usable value; their bands stay as they were", alias, len(empty))
        series = [s for s in series if s.observed]
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(series))

    baseline = config.baselines[alias]
    releases = None
    try:
        releases = series_releases(config, alias, series, now - baseline.history, now, fetch)
    except SourceError as exc:
        outcome.release_error = str(exc)
        log.warning("%s: release markers: %s; fitting without them", alias, exc)
    fitted, failures = fit_all(series, fit_settings(baseline, alias), executor, tick, releases)
    outcome.failures.update(failures)
    bands = [band_from_fitted(f, now) for f in fitted]
    base = previous or BaselineState(alias, now, ())
    merged = base.merged(bands, fitted_at=now if fitted or not series else base.fitted_at, drop=set(drop))
    meta = {"expr": baseline.expr, "step": baseline.step, "fingerprint": fit_fingerprint(baseline)}
    outcome.state = dataclasses.replace(merged, meta=meta)
    outcome.fitted = len(fitted)
    for band in outcome.state.series:
        outcome.kinds[(str(band.meta.get("curve_type")), str(band.meta.get("model")))] += 1
    outcome.coverage = [float(f.coverage["held_out"]) for f in fitted if f.coverage.get("held_out") is not None]
    outcome.nominal = max((float(f.coverage.get("nominal", 0.0)) for f in fitted), default=None)
    outcome.seconds = time.monotonic() - t0
    return outcome
