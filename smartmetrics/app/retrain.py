"""One retrain of one baseline: fetch its series, fit each in a worker pool, merge, store.

Used by the daemon's schedule and by `smartmetrics fit`. A series whose fit raises is counted by
reason and skipped (its previous band, if any, stays); a fetch that fails leaves the whole previous
state in place. The per-series fit itself is `smartmetrics.engine.ensemble.fit_series`, a pure function of
(series, settings), shipped in batches to a local process pool or a Dask cluster (`app.workers`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field

from smartmetrics.adapters.alert_store import AlertStoreError, load_alerts
from smartmetrics.adapters.markers import fetch_event_windows, series_releases
from smartmetrics.adapters.source import FetchResult, SourceError, fetch_baseline
from smartmetrics.app.selfmetrics import adjusted_count, series_kinds
from smartmetrics.app.workers import FitPool, PoolError
from smartmetrics.config import Config
from smartmetrics.engine.alerts import AlertRecord, feedback_factors, widen_band
from smartmetrics.engine.batch import FitFailure, batch_size, batches, fit_batch
from smartmetrics.engine.ensemble import FitSettings, FittedSeries
from smartmetrics.engine.fitted import band_from_fitted, band_problem
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.settings import fit_fingerprint, fit_settings, forecast_margin

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
    stage: str = "fetch"  # where `error` happened: fetch, or cluster (the fits could not be sent)
    release_error: str | None = None  # the release markers could not be read: fitted without them
    adjusted: int = 0  # series whose band on-call's feedback widens (`smartmetrics.engine.alerts`)


class PoolLost(Exception):
    """The pool went away while fits were pending (e.g. the Dask scheduler): they were abandoned."""


def _planned_settings(config: Config, alias: str, now: float, fetch: Callable[..., FetchResult],
                      outcome: RetrainOutcome) -> FitSettings:
    """The baseline's fit settings with its calendar events as of `now`: cron events over the history
    and the forecast, PromQL events where their expr was on in the history (without them, and said
    in `release_error`, when the source cannot tell)."""
    baseline = config.baselines[alias]
    observed = {}
    try:
        observed = fetch_event_windows(config, alias, now - baseline.history, now, fetch)
    except SourceError as exc:
        said = f"calendar events: {exc}"  # beside a release markers' error, if there was one
        outcome.release_error = f"{outcome.release_error}; {said}" if outcome.release_error else said
        log.warning("%s: calendar event markers: %s; fitting without them", alias, exc)
    span = (now - baseline.history, now + baseline.horizon + forecast_margin(baseline.horizon))
    return fit_settings(baseline, alias, span, observed)


def fit_all(
    series: list[Series], settings: FitSettings, pool: FitPool | None,
    on_done: Callable[[], None] | None = None, releases: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[list[FittedSeries], Counter[str]]:
    """Fit every series (told its `releases`, by series key), in batches on the pool when given;
    failures counted by exception type (a batch lost as a whole counts each of its series)."""
    fitted: list[FittedSeries] = []
    failures: Counter[str] = Counter()
    known = releases or {}

    def take(group: list[Series], results: list[FittedSeries | FitFailure]) -> None:
        for s, result in zip(group, results, strict=True):
            if isinstance(result, FitFailure):
                failures[result.kind] += 1
                log.warning("fit of %s failed: %s: %s", format_labels(s.labels), result.kind, result.message)
            elif (problem := band_problem(result, s)) is None:
                fitted.append(result)
            else:  # counted as a failed fit; the series keeps the band it had
                failures["InsaneBand"] += 1
                log.warning("fit of %s rejected: %s", format_labels(result.labels), problem)
            if on_done is not None:
                on_done()

    if pool is None:
        for s in series:
            take([s], fit_batch([s], settings, [known.get(s.key, ())]))
        return fitted, failures
    executor = pool.executor()
    groups = batches(series, batch_size(len(series), pool.slots()))
    futures = {executor.submit(fit_batch, g, settings, [known.get(s.key, ()) for s in g]): g for g in groups}
    for future, reason in _as_done(list(futures), pool.problem):
        group = futures[future]
        try:
            if reason is not None:
                raise PoolLost(reason)
            take(group, future.result())
        except Exception as exc:  # the batch was lost as a whole (a broken pool, a cancelled or killed task)
            kind = type(exc).__name__
            failures[kind] += len(group)
            log.warning("a batch of %d fits was lost: %s: %s", len(group), kind, exc)
            if on_done is not None:
                for _ in group:
                    on_done()
    return fitted, failures


def _as_done(
    futures: list[Future], problem: Callable[[], str | None] = lambda: None
) -> Iterator[tuple[Future, str | None]]:
    """Each future as it finishes, cancelled ones included (a pool shut down with `cancel_futures`
    cancels the queued fits without notifying `as_completed`, which would wait for them forever).
    Once `problem()` names a reason to stop waiting, the rest are cancelled and come with that reason
    (as do futures the pool cancelled itself while it had a problem, e.g. Dask on losing its scheduler)."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        cancelled = {f for f in pending | done if f.cancelled()}
        pending -= cancelled
        yield from ((f, None) for f in done - cancelled)
        if cancelled:  # by a stop (no reason: counted as cancelled), or by a cluster that went away
            reason = problem()
            yield from ((f, reason) for f in cancelled)
        if pending and (reason := problem()) is not None:
            log.error("%s; the %d batches still pending keep their previous bands", reason, len(pending))
            for f in pending:
                f.cancel()
            yield from ((f, reason) for f in pending)
            return


def retrain_baseline(
    config: Config,
    alias: str,
    previous: BaselineState | None,
    pool: FitPool | None,
    now: float,
    *,
    only: Collection[str] | None = None,
    drop: Collection[str] = (),
    fetch: Callable[..., FetchResult] = fetch_baseline,
    on_progress: Callable[[int, int], None] | None = None,
    alerts: Sequence[AlertRecord] | None = None,
) -> RetrainOutcome:
    """Fetch and fit a baseline (or only the series whose keys are in `only`) and merge with `previous`;
    the fresh bands widened where on-call called the recorded `alerts` noise (default: the store's)."""
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
    try:
        settings = _planned_settings(config, alias, now, fetch, outcome)
        fitted, failures = fit_all(series, settings, pool, tick, releases)
    except PoolError as exc:  # the fits could not be sent anywhere: every band stays as it was
        outcome.error, outcome.stage, outcome.seconds = f"{alias}: {exc}", "cluster", time.monotonic() - t0
        return outcome
    outcome.failures.update(failures)
    bands = _with_feedback(alias, [band_from_fitted(f, now) for f in fitted], alerts, config.store.path)
    base = previous or BaselineState(alias, now, ())
    merged = base.merged(bands, fitted_at=now if fitted or not series else base.fitted_at, drop=set(drop))
    meta = {"expr": baseline.expr, "step": baseline.step, "fingerprint": fit_fingerprint(baseline),
            "sharding": [config.sharding.shard, config.sharding.shards]}
    outcome.state = dataclasses.replace(merged, meta=meta)
    outcome.fitted = len(fitted)
    outcome.kinds = series_kinds(outcome.state.series)
    outcome.adjusted = adjusted_count(outcome.state.series)
    outcome.coverage = [float(f.coverage["held_out"]) for f in fitted if f.coverage.get("held_out") is not None]
    outcome.nominal = max((float(f.coverage.get("nominal", 0.0)) for f in fitted), default=None)
    outcome.seconds = time.monotonic() - t0
    return outcome


def _with_feedback(
    alias: str, bands: list[SeriesBand], alerts: Sequence[AlertRecord] | None, store: str
) -> list[SeriesBand]:
    """The freshly fitted bands, each side widened as the feedback on its series' alerts asks."""
    if alerts is None:
        try:
            alerts = load_alerts(store)
        except AlertStoreError as exc:
            log.error("%s: %s; fitting without feedback", alias, exc)
            alerts = []
    factors = feedback_factors(alerts, alias)
    if not factors:
        return bands
    out = [widen_band(b, factors.get(b.key, {})) for b in bands]
    for band in out:
        if band.meta.get("feedback"):
            log.info("%s: %s: band widened by feedback %s", alias, format_labels(band.labels), band.meta["feedback"])
    return out
