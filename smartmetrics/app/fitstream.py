"""Fits sent to the pool as their series arrive, and taken as they finish.

A retrain's series come in lists (the batches of a fetch); each list is cut into groups
(`engine.batch.batch_size` for its length) and every group submitted at once as one `fit_batch`, so
the workers start on the first series while later ones are still being fetched. The fitted series and
the failures by reason accumulate in the `FitStream`: a series whose fit raised, whose band is not
sane, or whose whole group was lost (a broken pool, a stop, a cluster gone), keeps its previous band.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any, TypeAlias

from smartmetrics.adapters.markers import ReleasesOf
from smartmetrics.app.workers import FitPool
from smartmetrics.engine.batch import FitFailure, batch_size, batches, fit_batch
from smartmetrics.engine.ensemble import FitSettings, FittedSeries
from smartmetrics.engine.fitted import band_problem
from smartmetrics.engine.series import Series, format_labels

log = logging.getLogger("smartmetrics.app.retrain")


STOPPING = "the daemon is stopping"

ClassificationOf: TypeAlias = Callable[[Series], "dict | None"]
"""A series' classification from its last fit (`engine.ensemble.kept_classification`), or None."""


class PoolLost(Exception):
    """The pool went away while fits were pending (e.g. the Dask scheduler): they were abandoned."""


class FitStream:
    """The fits of one retrain: `submit` as series arrive, `collect` what finished, `drain` at the end.
    Creating one starts the pool's workers (`FitPool.start`, which raises `PoolError` when the fits
    cannot be sent anywhere); without a pool the fits run in the calling thread as they are submitted."""

    def __init__(self, pool: FitPool | None, on_done: Callable[[], None] | None = None):
        self.executor = pool.start() if pool is not None else _Inline()
        self.slots = pool.slots() if pool is not None else 1
        self.problem = pool.problem if pool is not None else lambda: None
        self.stopped = (lambda: pool.stopped) if pool is not None else lambda: False
        self.on_done = on_done  # called once per series, fitted or not
        self.pending: dict[Future, list[Series]] = {}
        self.fitted: list[FittedSeries] = []
        self.failures: Counter[str] = Counter()
        self.submitted = self.done = 0  # series sent, and series whose fit is over (fitted or not)
        self.lost: str | None = None  # the pool's reason to give up: later groups are not sent
        self.lost_keys: set[str] = set()  # series whose group was lost (not a fit's own failure): worth a retry

    def submit(self, series: list[Series], settings: FitSettings, releases_of: ReleasesOf = lambda s: (),
               classification_of: ClassificationOf = lambda s: None) -> None:
        """Send the fits of `series` (each told its `releases_of` and the `classification_of` its last
        fit, `engine.ensemble.kept_classification`) to the pool, in groups."""
        self.submitted += len(series)
        for group in batches(series, batch_size(len(series), self.slots)):
            if self.lost is not None:
                self.lose(group)
                continue
            releases = [releases_of(s) for s in group]
            try:
                future = self.executor.submit(fit_batch, group, settings, releases,
                                              [classification_of(s) for s in group])
            except Exception as exc:  # noqa: BLE001 - a pool a stop shut down, a cluster gone: the group is lost
                # and so would be every later one: the retrain takes no more series
                self.lost = STOPPING if self.stopped() else f"the pool refused fits ({type(exc).__name__}: {exc})"
                self._lose(group, exc)
                continue
            self.pending[future] = group

    def collect(self, timeout: float) -> None:
        """Take the fits that finish within `timeout`, cancelled ones included (a pool shut down with
        `cancel_futures` cancels the queued fits without notifying `wait`, which would wait for them
        forever). Once `problem()` names a reason to stop waiting, the rest are cancelled and come with
        that reason (as do those the pool cancelled itself while it had a problem, e.g. Dask on losing
        its scheduler)."""
        if not self.pending:
            return
        done, rest = wait(list(self.pending), timeout=timeout, return_when=FIRST_COMPLETED)
        cancelled = {f for f in rest | done if f.cancelled()}
        for future in done - cancelled:
            self._take(future, None)
        if cancelled:  # by a stop (no reason: counted as cancelled), or by a cluster that went away
            reason = self._reason()
            for future in cancelled:
                self._take(future, reason)
        rest -= cancelled
        if rest and (reason := self._reason()) is not None:
            log.log(logging.INFO if reason == STOPPING else logging.ERROR,
                    "%s; the %d batches still pending keep their previous bands", reason, len(rest))
            self.lost = reason
            for future in rest:
                future.cancel()
                self._take(future, reason)

    def _reason(self) -> str | None:
        """Why the fits pending will not come: the daemon's stop, or the pool's own problem (if any)."""
        return STOPPING if self.stopped() else self.problem()

    def settle(self, grace: float) -> None:
        """Once `lost`: take the fits that finish within `grace` seconds; the rest are cancelled and
        lost with that reason (a stop waits for none)."""
        deadline = time.monotonic() + grace
        while self.pending and (left := deadline - time.monotonic()) > 0:
            self.collect(min(0.5, left))
        for future in list(self.pending):
            future.cancel()
            self._take(future, self.lost or "abandoned")

    def lose(self, series: list[Series]) -> None:
        """Series that will not be sent: lost with the pool's reason."""
        if series:
            self.submitted += len(series)
            self._lose(series, PoolLost(self.lost or "abandoned"))

    def backlog(self) -> int:
        """Series sent and not fitted yet (a lost group counts as done)."""
        return self.submitted - self.done

    def drain(self) -> None:
        """Wait for every fit sent."""
        while self.pending:
            self.collect(0.5)

    def _take(self, future: Future, reason: str | None) -> None:
        """One finished group: its fits kept, its failures counted by reason."""
        group = self.pending.pop(future)
        try:
            if reason is not None:
                raise PoolLost(reason)
            results = future.result()
        except Exception as exc:  # noqa: BLE001 - lost as a whole: a broken pool, a cancelled or killed task
            self._lose(group, exc)
            return
        for s, result in zip(group, results, strict=True):
            if isinstance(result, FitFailure):
                self.failures[result.kind] += 1
                log.warning("fit of %s failed: %s: %s", format_labels(s.labels), result.kind, result.message)
            elif (problem := band_problem(result, s)) is None:
                self.fitted.append(result)
            else:  # counted as a failed fit; the series keeps the band it had
                self.failures["InsaneBand"] += 1
                log.warning("fit of %s rejected: %s", format_labels(result.labels), problem)
            self._done()

    def _lose(self, group: list[Series], exc: BaseException) -> None:
        kind = type(exc).__name__
        self.failures[kind] += len(group)
        self.lost_keys.update(s.key for s in group)
        log.log(logging.INFO if self.stopped() else logging.WARNING, "a batch of %d fits was lost: %s: %s",
                len(group), kind, exc)
        for _ in group:
            self._done()

    def _done(self) -> None:
        self.done += 1
        if self.on_done is not None:
            self.on_done()


class _Inline(Executor):
    """Fits run in the calling thread as they are submitted (no pool: tests, and fits in process)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed on through the future, as a pool would
            future.set_exception(exc)
        return future


def fit_all(
    series: list[Series], settings: FitSettings, pool: FitPool | None,
    on_done: Callable[[], None] | None = None, releases: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[list[FittedSeries], Counter[str]]:
    """Fit every series (told its `releases`, by series key), in batches on the pool when given;
    failures counted by exception type (a batch lost as a whole counts each of its series)."""
    known = releases or {}
    stream = FitStream(pool, on_done)
    stream.submit(series, settings, lambda s: known.get(s.key, ()))
    stream.drain()
    return stream.fitted, stream.failures
