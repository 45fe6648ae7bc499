"""One retrain of one baseline: fetch its series, fit each in a worker pool, merge, store.

Used by the daemon's schedule and by `smartmetrics fit`. A series whose fit raises is counted by
reason and skipped (its previous band, if any, stays); a fetch that fails leaves the whole previous
state in place. The per-series fit itself is `smartmetrics.engine.ensemble.fit_series`, a pure function of
(series, settings), so the pool can be processes now and a cluster later.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field

from smartmetrics.adapters.markers import series_releases
from smartmetrics.adapters.source import FetchResult, SourceError, fetch_baseline
from smartmetrics.config import Config
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, fit_series
from smartmetrics.engine.fitted import band_from_fitted, band_problem
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.engine.state import BaselineState
from smartmetrics.settings import fit_fingerprint, fit_settings

log = logging.getLogger(__name__)


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
