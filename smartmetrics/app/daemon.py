"""The daemon: wiring only. Schedule, worker pool, store, snapshot, HTTP server and signals.

Start-up order is what makes restarts cheap: load the store and publish its bands (ready in
seconds), start serving, and only then refit what is due. Retrains never overlap; each baseline is
fetched, fitted in the process pool and written atomically on its own, so one failing baseline or
series never stops the others, and the last good bands keep being served meanwhile.
This is the only module that reads the clock.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from smartmetrics.adapters.api import (
    BAND_COLUMNS,
    MatchError,
    matches,
    parse_matchers,
    parse_range,
    render_baselines,
    render_series_chart,
    series_labels,
)
from smartmetrics.adapters.exporter import EMPTY, Snapshot
from smartmetrics.adapters.markers import fetch_expr, fetch_release_markers
from smartmetrics.adapters.server import HTTPServer, serve
from smartmetrics.adapters.source import SourceError, fetch_baseline
from smartmetrics.adapters.store import load_store, save_baseline
from smartmetrics.app.alerts import AlertBook, alerts_doc, feedback_doc, receive_doc
from smartmetrics.app.calendar_watch import EventWatch, has_promql_events
from smartmetrics.app.export import RemoteWritePusher, start_remote_write
from smartmetrics.app.selfmetrics import SelfMetrics, settling_count
from smartmetrics.app.workers import FitPool, pool_for
from smartmetrics.config import Baseline, Config, ConfigError, cron_trigger, load_config
from smartmetrics.engine.follow import follow_band
from smartmetrics.engine.realised import oldest_tally, tally
from smartmetrics.engine.releases import apply_to_band, needs_data_since, releases_for
from smartmetrics.engine.series import Series, labels_key
from smartmetrics.engine.state import BaselineState, SeriesBand, growing
from smartmetrics.render.promql import selector
from smartmetrics.settings import events_at, fit_fingerprint

if TYPE_CHECKING:
    from smartmetrics.app.retrain import RetrainOutcome

log = logging.getLogger("smartmetrics.app.daemon")

RELEASE_POLL = 60.0
"""Seconds between two reads of the release markers and of the PromQL calendar events (baselines
with them only)."""
STOP_GRACE = 5.0  # seconds a stop waits for the job under way before the process exits anyway
COVERAGE_LOOKBACK = 86400.0  # after a long stop, tally at most the last day (one bounded query)


def _due(band: SeriesBand, now: float, window: float) -> bool:
    """Whether discovery fits this series again before the next retrain: its fit withheld the band
    (too few points; or learning, once `min_history` has passed), or its band is young and its history
    has doubled since (`engine.state.growing`; `window` is the baseline's `history`)."""
    meta = band.meta if isinstance(band.meta, dict) else {}
    training = meta.get("training")
    if not isinstance(training, dict):
        return False
    if training.get("withheld"):
        until = training.get("learning_until")
        return not isinstance(until, int | float) or now >= until
    history, end = training.get("history"), meta.get("data_end")
    return isinstance(history, int | float) and isinstance(end, int | float) and growing(history, end, now, window)


class Daemon:
    """One smartmetrics process: `start()`, then `run_forever()` or `stop()`."""

    def __init__(self, config_path: str, *, workers: int | None = None, dask: str | None = None):
        self.config_path = config_path
        self.config: Config = load_config(config_path).own_share()
        self.metrics = SelfMetrics()
        self.workers = workers or max(1, (os.cpu_count() or 2))
        self.states: dict[str, BaselineState] = {}
        self.last_seen: dict[str, dict[str, float]] = {}  # per baseline, when each series was last present
        self._loaded_at = 0.0  # when the stored series were loaded: seen then, as far as `last_seen` knows
        self.releases_seen: dict[str, set[tuple[str, int]]] = {}
        self.events = EventWatch()  # the PromQL calendar events on, as last read
        self._snapshot: Snapshot = EMPTY
        self._publish_lock = threading.Lock()  # a snapshot swap never undoes another one
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._reload = threading.Event()
        self._retrain_lock = threading.Lock()
        self._pool: FitPool | None = pool_for(self.config.cluster, self.workers, dask)
        self._scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
        )
        self._server: HTTPServer | None = None
        sharding = self.config.sharding
        self.metrics.shard.labels(str(sharding.shard), str(sharding.shards)).set(1)
        self._pusher: RemoteWritePusher | None = None  # export.remote_write
        self.fetch = fetch_baseline  # the only way history comes in; tests may swap it
        self.alerts = AlertBook(self.config.store.path, lambda op: self.metrics.store_errors.labels(op).inc())
        self._silences_seen: dict[str, float] = {}  # silence id -> its updatedAt when first read

    # --- state --------------------------------------------------------------------------------

    def load(self) -> None:
        """Serve what the store holds for the configured baselines; unreadable files are counted.

        The cyclic garbage collector is off meanwhile and what was loaded is frozen after: the load builds
        several objects per series, none in a cycle, that live until a retrain replaces them, and at 100k
        series collections walking them again and again cost a good part of the start-up's CPU."""
        gc.disable()
        try:
            self._load()
        finally:
            gc.freeze()  # later collections skip what is alive now (freed by reference counting as ever)
            gc.enable()

    def _load(self) -> None:
        states, errors = load_store(self.config.store.path)
        for _ in errors:
            self.metrics.store_errors.labels("read").inc()
        self.states = {a: self._own(s) for a, s in states.items() if a in self.config.baselines}
        now = time.time()
        for alias in self.config.baselines:
            self.metrics.start_counters(alias, self.config.source_for(alias)[0])
        for state in self.states.values():
            self.metrics.restore(state)
        self._publish()
        self._ready.set()  # serving needs nothing more; what discovery needs comes after
        self.metrics.ready.set(1)
        self.last_seen, self._loaded_at = {}, now  # filled by `_seen` on first use: not needed to serve
        log.info("loaded %d series of %d baselines from %s; ready", self._snapshot.series_count(),
                 len(self.states), self.config.store.path)

    def _own(self, state: BaselineState) -> BaselineState:
        """`state` without the series another shard owns (after a change of `sharding.shards`, the
        series that moved are that shard's to fit and export now)."""
        sharding = self.config.sharding
        if state.meta.get("sharding", [0, 1]) == [sharding.shard, sharding.shards]:
            return state  # written by this shard under this shard count: all its own
        foreign = frozenset(key for key in (b.key for b in state.series)
                            if not sharding.owns_key(state.alias, key))
        if not foreign:
            return state
        log.info("%s: %d stored series belong to other shards now; no longer exported here", state.alias,
                 len(foreign))
        return state.merged((), state.fitted_at, drop=foreign)

    def _publish(self) -> None:
        """Swap in a new immutable snapshot (one reference assignment: scrapes never see half a state)."""
        ahead = {alias: baseline.ahead_offsets() for alias, baseline in self.config.baselines.items()}
        with self._publish_lock:
            self._snapshot = Snapshot(self.states, ahead=ahead, events=self.events.windows(self.config))
        for alias, state in self.states.items():
            self.metrics.owned.labels(alias).set(len(state.series))

    def due(self, alias: str, now: float) -> bool:
        """Whether a baseline needs a retrain now: never fitted, config changed, or older than its horizon."""
        state = self.states.get(alias)
        baseline = self.config.baselines[alias]
        if state is None or not state.series:
            return True
        if state.meta.get("fingerprint") != fit_fingerprint(baseline):
            return True
        return now - state.fitted_at >= baseline.horizon

    # --- jobs ---------------------------------------------------------------------------------

    def retrain(self, aliases: list[str] | None = None, *, only_due: bool = False) -> list[RetrainOutcome]:
        """Retrain baselines one after the other; returns at once if a retrain is already running."""
        if not self._retrain_lock.acquire(blocking=False):
            log.warning("retrain skipped: the previous one is still running")
            return []
        try:
            self.sync_silences()  # a silence set since the last sync counts at this retrain
            now = time.time()
            wanted = [a for a in (aliases or list(self.config.baselines)) if a in self.config.baselines]
            return [self._retrain_one(a, now) for a in wanted if not only_due or self.due(a, now)]
        finally:
            self._retrain_lock.release()

    def _retrain_one(
        self, alias: str, now: float, only: set[str] | None = None, drop: frozenset[str] = frozenset()
    ) -> RetrainOutcome:
        # imported here: the fit machinery (pandas, scipy, statsmodels) is not needed to serve the
        # stored bands, and a restart is ready half a second sooner without it
        from smartmetrics.app.retrain import RetrainOutcome, retrain_baseline

        if self._stopping.is_set():
            return RetrainOutcome(alias, error="stopping")
        log.info("retraining %s%s", alias, f" ({len(only)} new series)" if only else "")
        try:
            outcome = retrain_baseline(self.config, alias, self.states.get(alias), self._pool, now, only=only,
                                       drop=drop, fetch=self.fetch, alerts=self.alerts.records)
        except Exception as exc:
            log.exception("%s: retrain failed", alias)
            outcome = RetrainOutcome(alias, error=f"{alias}: retrain failed: {type(exc).__name__}: {exc}")
        self._record(outcome, now)
        baseline = self.config.baselines[alias]
        if baseline.releases is not None and outcome.fitted and alias in self.states and not self._stopping.is_set():
            self._releases_one(alias, baseline, now)  # a release still settling at the fit's end: withdraw now
        return outcome

    def sync_silences(self) -> None:
        """Alerts on-call silenced in Alertmanager become `noise` (`feedback.silences_as_noise`); an
        Alertmanager that cannot be read is logged and counted, and tried again at the next sync."""
        feedback = self.config.feedback
        if feedback is None or not feedback.silences_as_noise or feedback.alertmanager is None:
            return
        from smartmetrics.adapters.alertmanager import AlertmanagerError, fetch_silences
        from smartmetrics.engine.silences import first_seen

        try:
            silences = fetch_silences(feedback.alertmanager)
        except AlertmanagerError as exc:
            log.warning("silences: %s", exc)
            self.metrics.silence_errors.inc()
            return
        self.alerts.silence_as_noise(first_seen(silences, self._silences_seen), time.time())

    def _record(self, outcome: RetrainOutcome, now: float) -> None:
        """Count, store and publish one retrain's result (or keep the old state on failure)."""
        alias, m = outcome.alias, self.metrics
        source = self.config.source_for(alias)[0]
        m.fit_duration.labels(alias).observe(outcome.seconds)
        m.source_latency.labels(source).observe(outcome.fetch_seconds)
        if outcome.error is not None:
            log.error("%s; keeping the last good baselines", outcome.error)
            m.source_errors.labels(source, alias).inc()
            m.fit_failures.labels(alias, outcome.stage).inc()
            return
        if outcome.release_error is not None:
            m.source_errors.labels(source, alias).inc()
        for reason, count in outcome.failures.items():
            m.fit_failures.labels(alias, reason).inc(count)
        if "BrokenProcessPool" in outcome.failures and not self._stopping.is_set():  # a stop breaks it too
            log.error("the worker pool broke (a worker died); starting a new one")
            if self._pool is not None:
                self._pool.renew()
        m.fits.labels(alias, "ok").inc(outcome.fitted)
        m.fits.labels(alias, "failed").inc(sum(outcome.failures.values()))
        if self._stopping.is_set() or outcome.state is None:
            return
        seen = self._seen(alias)  # before the save: the stored series count as seen at the load
        self._save(outcome.state)
        seen.update({b.key: now for b in outcome.state.series if b.key not in seen})
        if outcome.fitted:
            m.last_success.labels(alias).set(now)
        m.set_series(alias, outcome.kinds)
        m.feedback_adjustments.labels(alias).set(outcome.adjusted)
        self._publish()
        self._ready.set()
        log.info("%s: %d series fitted (%d kept their curve type, %d their backtest too), %d failed, %.1fs",
                 alias, outcome.fitted, outcome.kept, outcome.kept_backtests, sum(outcome.failures.values()),
                 outcome.seconds)

    def _save(self, state: BaselineState) -> None:
        """Write a baseline to the store and hold it in memory (served from memory if the write fails)."""
        try:
            save_baseline(self.config.store.path, state)
        except OSError as exc:
            log.error("store: cannot write baseline %s: %s (served from memory until the next retrain)",
                      state.alias, exc)
            self.metrics.store_errors.labels("write").inc()
        self.states[state.alias] = state

    def discover(self) -> None:
        """Fit series that appeared since the last retrain; drop those gone longer than stale_after."""
        if not self._retrain_lock.acquire(blocking=False):
            return
        try:
            now = time.time()
            for alias, baseline in self.config.baselines.items():
                if self._stopping.is_set():
                    return
                self._discover_one(alias, baseline, now)
        finally:
            self._retrain_lock.release()

    def _seen(self, alias: str) -> dict[str, float]:
        """When each series of a baseline was last present at its source, by key; the series loaded from
        the store count as present at the load. Built on first use: at 100k series the keys cost a third of
        a second of CPU, which the start-up has better uses for."""
        seen = self.last_seen.get(alias)
        if seen is None:
            state = self.states.get(alias)
            seen = self.last_seen[alias] = {b.key: self._loaded_at for b in state.series} if state else {}
        return seen

    def _with_history(self, alias: str, history: float) -> Config:
        """The config with only this baseline, reading `history` seconds back instead of its own."""
        baseline = self.config.baselines[alias].model_copy(update={"history": history})
        return self.config.model_copy(update={"baselines": {alias: baseline}})

    def _discover_one(self, alias: str, baseline: Baseline, now: float) -> None:
        recent = self._with_history(alias, 3 * baseline.step)
        try:
            present = {s.key for s in self.fetch(recent, alias, end=now).series if s.observed}
        except SourceError as exc:
            log.warning("discovery: %s", exc)
            self.metrics.source_errors.labels(self.config.source_for(alias)[0], alias).inc()
            return
        seen = self._seen(alias)
        seen.update({k: now for k in present})
        state = self.states.get(alias)
        known = {b.key for b in state.series} if state else set()
        stale = {k for k in known if now - seen.get(k, now) > self.config.schedule.stale_after}
        waiting = {b.key for b in state.series if _due(b, now, baseline.history)} if state else set()  # young
        waiting |= set(state.meta.get("unfitted", ())) if state else set()  # not refitted at the last retrain
        new = present - (known - waiting)
        if new or stale:
            self._retrain_one(alias, now, only=new, drop=stale)
            for key in stale:
                seen.pop(key, None)
            self._tried(alias, new)

    def _tried(self, alias: str, keys: set[str]) -> None:
        """The unfitted series discovery just tried are not tried again, whatever came of it (a
        retrain that failed as a whole saved nothing): the next retrain takes them."""
        state = self.states.get(alias)
        unfitted = set(state.meta.get("unfitted", ())) if state else set()
        if state is not None and unfitted & keys:
            meta = {k: v for k, v in state.meta.items() if k != "unfitted"}
            if unfitted - keys:
                meta["unfitted"] = sorted(unfitted - keys)
            self.states[alias] = dataclasses.replace(state, meta=meta)

    def watch_releases(self) -> None:
        """Apply new release markers to the baselines that have them (`smartmetrics.engine.releases`); not
        while a retrain runs, whose fresh fits have seen the releases before it."""
        self._each_fitted(lambda baseline: baseline.releases is not None, self._releases_one)

    def follow_levels(self) -> None:
        """Let bands follow the new levels their series have stayed at (`smartmetrics.engine.follow`); not
        while a retrain runs, whose fresh fits start from the new levels."""
        self._each_fitted(lambda baseline: baseline.follow is not None, self._follow_one)

    def check_coverage(self) -> None:
        """Tally the points that arrived since the last check against the bands served for them
        (`smartmetrics.engine.realised`), for `smartmetrics_band_coverage`; not while a retrain runs."""
        self._each_fitted(lambda baseline: True, self._coverage_one)

    def _coverage_one(self, alias: str, baseline: Baseline, now: float) -> None:
        state = self.states[alias]
        if not state.series:
            return
        window = min(max(now - oldest_tally(state.series), 2 * baseline.step), COVERAGE_LOOKBACK)
        try:
            observed = {s.key: (s.timestamps, s.values)
                        for s in self.fetch(self._with_history(alias, window), alias, end=now).series}
        except SourceError as exc:
            log.warning("coverage: %s", exc)
            self.metrics.source_errors.labels(self.config.source_for(alias)[0], alias).inc()
            return
        bands = tuple(tally(b, observed.get(b.key), now) for b in state.series)
        if all(new is old for new, old in zip(bands, state.series)):
            return
        self._save(BaselineState(alias, state.fitted_at, bands, state.meta))
        self._publish()

    def _each_fitted(self, wanted: Callable[[Baseline], bool], action: Callable[[str, Baseline, float], None]) -> None:
        """`action(alias, baseline, now)` for each fitted baseline `wanted`, holding the retrain lock."""
        if not self._retrain_lock.acquire(blocking=False):
            return
        try:
            now = time.time()
            for alias, baseline in self.config.baselines.items():
                if wanted(baseline) and alias in self.states and not self._stopping.is_set():
                    action(alias, baseline, now)
        finally:
            self._retrain_lock.release()

    def _follow_one(self, alias: str, baseline: Baseline, now: float) -> None:
        state, rules = self.states[alias], baseline.follow
        if not state.series or rules is None:
            return
        try:
            window = self._with_history(alias, rules.after + 2 * baseline.step)
            observed = {s.key: (s.timestamps, s.values) for s in self.fetch(window, alias, end=now).series}
        except SourceError as exc:
            log.warning("follow: %s", exc)
            self.metrics.source_errors.labels(self.config.source_for(alias)[0], alias).inc()
            return
        bands = [follow_band(b, observed.get(b.key), now, after=rules.after, absorb=rules.absorb) for b in state.series]
        records = [new.meta.get("follow") or {} for new, old in zip(bands, state.series) if new is not old]
        if not records:
            return
        moved = sum(not r.get("back") and r.get("shift") is not None for r in records)
        back = sum(bool(r.get("back")) for r in records)
        self.metrics.follows.labels(alias).inc(moved)
        self._save(BaselineState(alias, state.fitted_at, tuple(bands), state.meta))
        self._publish()
        log.info("%s: %d bands followed their series to a new level, %d went back with it", alias, moved, back)

    def release_markers(self, alias: str, since: float, now: float) -> list[tuple[dict[str, str], int]]:
        """(marker labels, release time) for every release of a baseline's `releases.expr` in (since, now]."""
        return fetch_release_markers(self.config, alias, since, now, self.fetch)

    def _releases_one(self, alias: str, baseline: Baseline, now: float) -> None:
        state, rules = self.states[alias], baseline.releases
        if not state.series:
            return
        fitted_on = min(float(b.meta.get("data_end", state.fitted_at)) for b in state.series)
        since = max(fitted_on - rules.settle, now - baseline.history)  # a fit leaves unsettled releases to us
        source = self.config.source_for(alias)[0]
        try:
            markers = self.release_markers(alias, since, now)
        except SourceError as exc:
            log.warning("release markers: %s", exc)
            self.metrics.source_errors.labels(source, alias).inc()
            return
        seen = self.releases_seen.setdefault(alias, set())
        fresh = {(labels_key(labels), t) for labels, t in markers} - seen
        self.metrics.releases.labels(alias).inc(len(fresh))
        seen |= fresh
        wanted = {b.key: releases_for(b.labels, markers, rules.match) for b in state.series}
        starts = [t for b in state.series if (t := needs_data_since(b, wanted[b.key], now, rules.settle)) is not None]
        if not starts:
            return
        try:
            window = self._with_history(alias, max(now - min(starts) + baseline.step, 2 * baseline.step))
            observed = {s.key: (s.timestamps, s.values) for s in self.fetch(window, alias, end=now).series}
        except SourceError as exc:
            log.warning("releases: %s; the bands stay as they are until the next pass", exc)
            self.metrics.source_errors.labels(source, alias).inc()
            observed = {}
        bands = [apply_to_band(b, wanted[b.key], now, observed.get(b.key), settle=rules.settle, absorb=rules.absorb)
                 for b in state.series]
        changed = sum(new is not old for new, old in zip(bands, state.series))
        settling = settling_count(bands)
        self.metrics.settling.labels(alias).set(settling)
        if not changed:
            return
        self._save(BaselineState(alias, state.fitted_at, tuple(bands), state.meta))
        self._publish()
        log.info("%s: releases applied to %d series, %d settling", alias, changed, settling)

    def watch_events(self) -> None:
        """Read the PromQL calendar events of the baselines that have them (`app.calendar_watch`) and
        swap in a snapshot that serves their bands withdrawn or widened while they are on. Not held
        back by a retrain, as releases are: no stored band changes, and a maintenance that starts
        during a long retrain must not page."""
        now, changed, config = time.time(), False, self.config  # one config throughout: a reload may swap it
        for alias, baseline in config.baselines.items():
            if self._stopping.is_set():
                return
            if has_promql_events(baseline):
                try:
                    changed |= self.events.poll(config, alias, now, self.fetch)
                except SourceError as exc:
                    log.warning("calendar events: %s; keeping their last known state", exc)
                    self.metrics.source_errors.labels(config.source_for(alias)[0], alias).inc()
        if changed:
            with self._publish_lock:
                self._snapshot = self._snapshot.with_events(self.events.windows(config))

    # --- HTTP app -----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def metrics_text(self) -> bytes:
        now = time.time()
        snapshot = self._snapshot
        for alias, hours in snapshot.remaining_hours(now).items():
            self.metrics.hours_remaining.labels(alias).set(hours)
        self.metrics.set_calendar({alias: events_at(b, now, self.events.active(alias))
                                   for alias, b in self.config.baselines.items()})
        return snapshot.render_text(now).encode() + generate_latest(self.metrics.registry)

    def baselines_json(self) -> dict[str, Any]:
        return render_baselines(self.config, self._snapshot.states, time.time())

    def series_json(self, alias: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Chart JSON for a baseline's series matching `match`, over [start, end] (default: last day to +1d)."""
        if alias not in self.config.baselines:
            return 404, {"status": "error", "error": f"unknown baseline {alias!r}"}
        now = time.time()
        try:
            matchers = parse_matchers(query.get("match", ""))
            start, end = parse_range(query, now)
        except (MatchError, ValueError) as exc:
            return 400, {"status": "error", "error": str(exc)}
        state = self._snapshot.states.get(alias)
        bands = [b for b in (state.series if state else ()) if matches(b.labels, matchers)]
        values, warnings = [], []
        if bands and start < now:
            step = self.config.baselines[alias].step
            window = self._with_history(alias, max(min(end, now) - start, 2 * step))
            try:
                values = self.fetch(window, alias, end=min(end, now)).series
            except SourceError as exc:  # the bands are still worth having: say what is missing, as Prometheus does
                warnings.append(f"the series' values could not be read: {exc}")
        past: dict[str, dict[str, Any]] = {}
        reach = min((b.start for b in bands), default=start)
        if bands and start < reach:  # before the stored forecast: the band history the source holds
            try:
                past = self._band_history(alias, start, min(reach, end, now))
            except SourceError as exc:
                warnings.append(f"the band history before the current forecast could not be read: {exc}")
        doc = render_series_chart(bands, values, start, end, past)
        return 200, {**doc, "warnings": warnings} if warnings else doc

    def _band_history(self, alias: str, start: float, end: float) -> dict[str, dict[str, Any]]:
        """The exported bands of `alias` in the source over [start, end] (scraped from this daemon, or
        written by `smartmetrics backfill`), by series key and column."""
        history = max(end - start, 2 * self.config.baselines[alias].step)
        out: dict[str, dict[str, Any]] = {}
        for column in BAND_COLUMNS:
            exported = selector(f"smartmetrics_{column}", alias)
            for s in fetch_expr(self.config, alias, exported, history, end, self.fetch):
                own = Series(series_labels(s.labels), s.timestamps, s.values, s.step)
                out.setdefault(own.key, {})[column] = own
        return out

    def alerts_json(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return alerts_doc(self.alerts, query, self.config.baselines, time.time())

    def receive_alerts(self, body: bytes) -> tuple[int, dict[str, Any]]:
        snapshot = self._snapshot

        def bands(alias: str) -> tuple[SeriesBand, ...]:
            state = snapshot.states.get(alias)
            return state.series if state else ()

        return receive_doc(self.alerts, body, self.config.baselines, bands, time.time(), self._count_alert)

    def _count_alert(self, what: str, label: str) -> None:
        counter = {"received": self.metrics.alerts_received, "recorded": self.metrics.alerts_recorded,
                   "rejected": self.metrics.alert_payloads_rejected}[what]
        counter.labels(label).inc()

    def payload_rejected(self, reason: str) -> None:
        self._count_alert("rejected", reason)

    def alert_feedback(self, alert_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        return feedback_doc(self.alerts, alert_id, body, time.time())

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the stored bands, then schedule retrains; the first retrain of what is due runs now."""
        self._server = serve(self, self.config.server)
        log.info("listening on %s://%s:%d", self._server.scheme, *self._server.address)
        self.load()
        self._pusher = start_remote_write(self.config.export, lambda: self._snapshot, self.metrics, time.time)
        self._schedule()
        self._scheduler.start()
        self._scheduler.add_job(self.retrain, kwargs={"only_due": True}, id="startup", name="retrain what is due")

    def _schedule(self) -> None:
        schedule = self.config.schedule
        trigger = cron_trigger(schedule.retrain, "UTC")  # day of week as cron reads it (0: Sunday)
        trigger.jitter = int(schedule.jitter) or None
        self._scheduler.add_job(self.retrain, trigger, id="retrain", name="daily retrain", replace_existing=True)
        self._scheduler.add_job(self.discover, "interval", seconds=schedule.discover, id="discover",
                                name="discover new series", replace_existing=True)
        self._scheduler.add_job(self.follow_levels, "interval", seconds=schedule.discover, id="follow",
                                name="follow new levels", replace_existing=True)
        self._scheduler.add_job(self.check_coverage, "interval", seconds=schedule.discover, id="coverage",
                                name="tally realised coverage", replace_existing=True)
        feedback = self.config.feedback
        silences = feedback is not None and feedback.silences_as_noise
        baselines = self.config.baselines.values()
        polls = (("releases", self.watch_releases, "apply release markers", RELEASE_POLL, {},
                  any(b.releases is not None for b in baselines)),
                 ("events", self.watch_events, "follow PromQL calendar events", RELEASE_POLL,
                  {"next_run_time": datetime.now(timezone.utc)}, any(has_promql_events(b) for b in baselines)),
                 ("silences", self.sync_silences, "silences as noise", feedback.interval if silences else 0, {},
                  silences))
        for job, action, name, every, first, wanted in polls:
            if wanted:
                self._scheduler.add_job(action, "interval", seconds=every, id=job, name=name,
                                        replace_existing=True, **first)
            elif self._scheduler.get_job(job) is not None:
                self._scheduler.remove_job(job)

    def reload(self) -> bool:
        """Re-read the config; a bad one is logged and the running one kept."""
        try:
            config = load_config(self.config_path).own_share()
        except ConfigError as exc:
            log.error("reload rejected, keeping the running config: %s", "; ".join(exc.problems))
            return False
        kept = ("server", "store", "cluster", "sharding", "export")
        if any(getattr(config, k) != getattr(self.config, k) for k in kept):
            log.warning("server, store, cluster, sharding and export changes need a restart; the rest of the new "
                        "config applies now")
            config = config.model_copy(update={k: getattr(self.config, k) for k in kept})
        self.config = config
        stored, _ = load_store(config.store.path)  # e.g. written by `smartmetrics fit` meanwhile
        for alias, state in stored.items():
            if alias not in self.states or state.fitted_at > self.states[alias].fitted_at:
                self._seen(alias)  # as it was: series new in the file count as seen at the next discovery
                self.states[alias] = self._own(state)
                self.metrics.restore(self.states[alias])
        self.states = {a: s for a, s in self.states.items() if a in config.baselines}
        for alias in config.baselines:
            self.metrics.start_counters(alias, config.source_for(alias)[0])
        self._publish()
        self._schedule()
        self._scheduler.add_job(self.retrain, kwargs={"only_due": True}, name="retrain after reload")
        log.info("config reloaded: %d baselines", len(config.baselines))
        return True

    def run_forever(self) -> None:
        """Block until SIGTERM/SIGINT; SIGHUP reloads the config."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        while not self._stopping.wait(0.5):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        self.stop()
        if not self._retrain_lock.acquire(timeout=STOP_GRACE):  # a fetch still waiting on its source
            log.warning("a job did not finish within %.0f s of the stop; exiting without it", STOP_GRACE)
            logging.shutdown()
            os._exit(0)  # the store is as last written: every save is atomic
        self._retrain_lock.release()

    def stop(self) -> None:
        """Stop cleanly: no new jobs, running fits abandoned, the store left as last written."""
        log.info("stopping")
        self._stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._pool is not None:
            self._pool.stop()  # running fits are abandoned: their bands were never going to be saved
        if self._server is not None:
            self._server.stop()
        if self._pusher is not None:
            self._pusher.stop()
