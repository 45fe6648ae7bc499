"""One retrain of one baseline: fetch its series, fit each in a worker pool, merge, store.

Used by the daemon's schedule and by `smartmetrics fit`. The fits start while the fetch goes on: the
pool's workers are started first, the fetch runs in a thread of its own and hands over each list of
series whose whole range has arrived (`fetch_baseline(..., on_series=...)`), and each list goes to the
pool at once (`app.fitstream`). A series whose fit raises is counted by reason and skipped (its
previous band, if any, stays), as is a series whose batch could not be fetched (`FetchFailed`); a
fetch that fails as a whole leaves the whole previous state in place. The state is merged once, after
the last fit, for the caller to store. The per-series fit itself is
`smartmetrics.engine.ensemble.fit_series`, a pure function of (series, settings), shipped in batches to
a local process pool or a Dask cluster (`app.workers`).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from smartmetrics.adapters.alert_store import AlertStoreError, load_alerts
from smartmetrics.adapters.markers import ReleasesOf, fetch_event_windows, fetch_releases_of
from smartmetrics.adapters.source import FetchResult, SourceError, fetch_baseline
from smartmetrics.app.fitstream import STOPPING, ClassificationOf, FitStream
from smartmetrics.app.selfmetrics import adjusted_count, series_kinds
from smartmetrics.app.workers import FitPool, PoolError
from smartmetrics.config import Config
from smartmetrics.engine.alerts import AlertRecord, feedback_factors, widen_band
from smartmetrics.engine.ensemble import FitSettings
from smartmetrics.engine.fitted import band_from_fitted
from smartmetrics.engine.series import Series, format_labels, labels_key
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
    interrupted: str | None = None  # why the fits stopped before the fetch's end (a pool lost, a stop)
    kept: int = 0  # fitted series that kept their last fit's classification (`ensemble.kept_classification`)
    kept_backtests: int = 0  # ...and its backtest's members and calibration (`ensemble.kept_ensemble`)


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


def _releases_of(config: Config, alias: str, now: float, fetch: Callable[..., FetchResult],
                 outcome: RetrainOutcome) -> ReleasesOf:
    """Each series' releases in the history, from the release markers read once (none, and said in
    `release_error`, when the source cannot tell)."""
    try:
        return fetch_releases_of(config, alias, now - config.baselines[alias].history, now, fetch)
    except SourceError as exc:
        outcome.release_error = str(exc)
        log.warning("%s: release markers: %s; fitting without them", alias, exc)
        return lambda series: ()


LOST_GRACE = 10.0
"""Seconds a retrain whose pool refused a fit waits for the fits already under way."""

BACKLOG = 512
"""Series sent to the pool and not fitted yet above which a retrain takes no more from the fetch: a
few seconds of work for two workers, and 16 MB of values at 14 days of 5 minutes."""


class Abandoned(Exception):
    """The retrain gave up on the fetch's series: raised in the fetch, so it stops asking for more."""


class Arrivals:
    """Lists of series handed over by the fetch, in its own thread, to the fits, in the caller's.

    At most `capacity` lists wait here: once they do, the fetch's `put` waits for the fits to take
    one, so a retrain holds a few batches of series, not the whole baseline, whatever its size (the
    caller takes lists only while the pool's backlog is small, `FitStream.backlog`); `waited` says
    how long the fetch spent waiting. Once `abandon`ed (the retrain gave up), `put` raises
    `Abandoned`, which ends the fetch and cancels its requests still under way."""

    _END = object()

    def __init__(self, capacity: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._abandoned = threading.Event()
        self.open = True
        self.closed_at = 0.0  # time.monotonic() when the fetch ended
        self.waited = 0.0  # seconds the fetch spent waiting for the fits

    def put(self, series: list[Series]) -> None:
        """The fetch's `on_series` callback."""
        if not self._put(series):
            raise Abandoned("the retrain no longer takes series")

    def close(self) -> None:
        """No more series will come (the fetch returned or raised)."""
        self.closed_at, waited = time.monotonic(), self.waited
        self._put(self._END)
        self.waited = waited  # the fetch had ended: its time is up to `closed_at`

    def _put(self, item: object) -> bool:
        """Whether `item` was handed over (not, once abandoned)."""
        since = time.monotonic()
        try:
            while not self._abandoned.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            self.waited += time.monotonic() - since

    def abandon(self) -> None:
        """No more lists will be taken: the fetch stops at its next hand-over."""
        self._abandoned.set()

    def leftovers(self) -> list[list[Series]]:
        """The lists still waiting, once abandoned: fetched, never to be fitted."""
        out = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is not self._END:
                out.append(item)

    def get(self, timeout: float) -> list[Series]:
        """The next list of series; [] if none came within `timeout`, or none will (`open` is then False)."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        if item is self._END:
            self.open = False
            return []
        return item


def _start_fetch(arrivals: Arrivals, fetch: Callable[..., FetchResult], config: Config, alias: str,
                 now: float) -> Future[FetchResult]:
    """`_fetch_into` in a daemon thread, its outcome in the future returned: a Ctrl-C of `smartmetrics
    fit` or an exception in the fits never waits for a fetch still retrying a source that is down."""
    future: Future[FetchResult] = Future()

    def run() -> None:
        try:
            future.set_result(_fetch_into(arrivals, fetch, config, alias, now))
        except BaseException as exc:  # noqa: BLE001 - handed on to the retrain through the future
            future.set_exception(exc)

    threading.Thread(target=run, name=f"smartmetrics-fetch-{alias}", daemon=True).start()
    return future


def _fetch_into(arrivals: Arrivals, fetch: Callable[..., FetchResult], config: Config, alias: str,
                now: float) -> FetchResult:
    """Run `fetch` (in the fetch thread), its series handed to `arrivals` as they come; a fetch that
    does not take `on_series` (a test's fake) hands over what it returns, at its end."""
    try:
        if _takes_on_series(fetch):
            result = fetch(config, alias, end=now, on_series=arrivals.put)
        else:
            result = fetch(config, alias, end=now)
        if result.series:  # not handed to the callback: a fetch that ignores it
            arrivals.put(result.series)
        return result
    finally:
        arrivals.close()


def _takes_on_series(fetch: Callable[..., FetchResult]) -> bool:
    """Whether `fetch` accepts an `on_series` keyword."""
    try:
        params = inspect.signature(fetch).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "on_series" or p.kind is p.VAR_KEYWORD for p in params)


@dataclass
class _Intake:
    """The series that arrive, before their fits: only those asked for (`only`), counted, and those
    without a single usable value set aside (only gaps, or values no metric can take: their bands stay)."""

    alias: str
    only: Collection[str] | None
    fetched: int = 0
    empty: int = 0

    def __call__(self, series: list[Series]) -> list[Series]:
        series = [s for s in series if self.only is None or s.key in self.only]
        usable = [s for s in series if s.observed]
        self.fetched += len(series)
        if len(usable) < len(series):
            self.empty += len(series) - len(usable)
            log.warning("%s: %d series returned no usable value; their bands stay as they were", self.alias,
                        len(series) - len(usable))
        return usable


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
    reclassify: bool = False,
) -> RetrainOutcome:
    """Fetch and fit a baseline (or only the series whose keys are in `only`) and merge with `previous`;
    the fresh bands widened where on-call called the recorded `alerts` noise (default: the store's).
    Each series keeps the classification of its last fit in `previous` where the engine allows
    (`engine.ensemble.kept_classification`), unless `reclassify`.
    `on_progress(done, total)` counts the fits; `total` grows as the series arrive."""
    outcome = RetrainOutcome(alias)
    t0 = time.monotonic()
    try:
        stream = FitStream(pool)
    except PoolError as exc:  # the fits could not be sent anywhere: every band stays as it was
        outcome.error, outcome.stage, outcome.seconds = f"{alias}: {exc}", "cluster", time.monotonic() - t0
        return outcome
    if on_progress is not None:
        stream.on_done = lambda: on_progress(stream.done, stream.submitted)
    arrivals, intake = Arrivals(), _Intake(alias, only)
    fetching = _start_fetch(arrivals, fetch, config, alias, now)
    plan: tuple[FitSettings, ReleasesOf, ClassificationOf] | None = None
    try:
        while (arrivals.open or stream.pending) and stream.lost is None:  # a lost pool: fetching more is in vain
            # new series only while the pool has little left to do: the rest wait in the fetch
            taking = arrivals.open and stream.backlog() < BACKLOG
            if taking and (arrived := intake(arrivals.get(0.05 if stream.pending else 0.5))):
                plan = plan or _plan(config, alias, None if reclassify else previous, now, fetch, outcome)
                stream.submit(arrived, *plan)
                if on_progress is not None:
                    on_progress(stream.done, stream.submitted)
            stream.collect(0.0 if taking else 0.5)
    finally:
        arrivals.abandon()
    if stream.lost is not None:  # the fits under way finish or are lost
        stream.settle(0.0 if stream.lost == STOPPING else LOST_GRACE)
    try:
        result = fetching.result()
    except SourceError as exc:
        outcome.error, outcome.seconds = str(exc), time.monotonic() - t0
        return outcome
    except Abandoned:  # the pool went away: what was fitted is kept, the series not fetched keep their bands
        log.log(logging.INFO if stream.lost == STOPPING else logging.ERROR,
                "%s: %s; stopped fetching, the series not fetched yet keep their previous bands", alias, stream.lost)
        result = FetchResult(alias, [], 0, 0, 0, 0.0)
    for left in arrivals.leftovers():  # fetched (the fetch has ended), never fitted: counted as lost
        stream.lose(intake(left))
    outcome.interrupted = stream.lost or (f"{len(stream.lost_keys)} fits were lost with the pool"
                                          if stream.lost_keys and not stream.stopped() else None)
    outcome.fetch_seconds = arrivals.closed_at - t0 - arrivals.waited  # not the time it waited for the fits
    outcome.fetched, outcome.dropped = intake.fetched, result.dropped
    _count_failures(outcome, intake, result, only, stream)
    _merge(outcome, config, previous, stream, now, drop, alerts, result, only)
    outcome.seconds = time.monotonic() - t0
    return outcome


def _plan(config: Config, alias: str, previous: BaselineState | None, now: float, fetch: Callable[..., FetchResult],
          outcome: RetrainOutcome) -> tuple[FitSettings, ReleasesOf, ClassificationOf]:
    """The fit settings, each series' releases (their markers read once for the whole baseline) and
    each series' classification from its last fit."""
    releases_of = _releases_of(config, alias, now, fetch, outcome)  # first: its error is said first
    return _planned_settings(config, alias, now, fetch, outcome), releases_of, _classifications(config, alias, previous)


def _classifications(config: Config, alias: str, previous: BaselineState | None) -> ClassificationOf:
    """Each series' classification from its last fit, which a daily retrain keeps while
    `engine.ensemble.kept_classification` allows; none after the baseline's fit config changed."""
    if previous is None or previous.meta.get("fingerprint") != fit_fingerprint(config.baselines[alias]):
        return lambda series: None
    known = {band.key: band.meta.get("classification") for band in previous.series}
    return lambda series: known.get(series.key)


def _count_failures(outcome: RetrainOutcome, intake: _Intake, result: FetchResult,
                    only: Collection[str] | None, stream: FitStream) -> None:
    """The series that were not fitted, by reason: no usable value, a batch that could not be
    fetched, and the fits' own failures."""
    if intake.empty:
        outcome.failures["NoData"] += intake.empty
    unfetched = sum(1 for labels in result.failed if only is None or labels_key(labels) in only)
    if unfetched:
        outcome.failures["FetchFailed"] += unfetched
        log.warning("%s: %d series could not be fetched; their bands stay as they were", outcome.alias, unfetched)
    outcome.failures.update(stream.failures)


def _merge(outcome: RetrainOutcome, config: Config, previous: BaselineState | None, stream: FitStream,
           now: float, drop: Collection[str], alerts: Sequence[AlertRecord] | None, result: FetchResult,
           only: Collection[str] | None) -> None:
    """The fresh bands merged into `previous` as the outcome's state, with what the summary shows.

    The series that keep an older band for a reason that may pass (their batch could not be
    fetched, their fits were lost with a pool) are listed in the state's `meta["unfitted"]`, which
    discovery retries once before the next retrain. A discovery (`only`) keeps the fit time and the
    fingerprint of the last full retrain. A full retrain that found no series at all where
    `previous` has some (a source's glitch, a listing answered empty) leaves `previous` as it was:
    if it was due (its config changed, its fit is old), it stays due."""
    alias, fitted = outcome.alias, stream.fitted
    baseline = config.baselines[alias]
    if only is None and not outcome.fetched and not result.failed and previous is not None and previous.series:
        log.warning("%s: the source returned none of its %d series; they keep their bands, and the baseline "
                    "its last fit (a retrain it was due stays due)", alias, len(previous.series))
        outcome.state = previous
        outcome.kinds, outcome.adjusted = series_kinds(previous.series), adjusted_count(previous.series)
        return
    bands = _with_feedback(alias, [band_from_fitted(f, now) for f in fitted], alerts, config.store.path)
    base = previous or BaselineState(alias, now, ())
    partial = only is not None and previous is not None  # discovery: the baseline's fit stays the last full one
    fresh = (fitted or not stream.submitted) and not partial
    merged = base.merged(bands, fitted_at=now if fresh else base.fitted_at, drop=set(drop))
    failed = {key for key in map(labels_key, result.failed) if only is None or key in only} | stream.lost_keys
    if outcome.interrupted and only is None:  # the series never fetched keep their bands too
        failed |= {b.key for b in base.series}
    held = {b.key for b in merged.series}
    unfitted = (set(base.meta.get("unfitted", ())) | failed) - {b.key for b in bands}
    if only is not None:  # discovery's retry is the one retry: a series that fails again waits for the retrain
        unfitted -= set(only)
    meta = {"expr": baseline.expr, "step": baseline.step, "fingerprint": fit_fingerprint(baseline),
            "sharding": [config.sharding.shard, config.sharding.shards]}
    if partial:  # what the last full retrain was fitted with, so that a config change stays due
        meta.update({k: base.meta[k] for k in ("expr", "step", "fingerprint") if k in base.meta})
    if unfitted & held:
        meta["unfitted"] = sorted(unfitted & held)
    outcome.state = dataclasses.replace(merged, meta=meta)
    outcome.fitted = len(fitted)
    outcome.kept = sum(f.training.get("classification") == "kept" for f in fitted)
    outcome.kept_backtests = sum(f.training.get("ensemble") == "kept" for f in fitted)
    outcome.kinds = series_kinds(outcome.state.series)
    outcome.adjusted = adjusted_count(outcome.state.series)
    outcome.coverage = [float(f.coverage["held_out"]) for f in fitted if f.coverage.get("held_out") is not None]
    outcome.nominal = max((float(f.coverage.get("nominal", 0.0)) for f in fitted), default=None)


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
