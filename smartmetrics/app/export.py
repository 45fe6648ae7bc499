"""Push the daemon's bands to a remote-write receiver in a thread of their own (`export.remote_write`).

Every `interval` the current snapshot is pushed at the current time (`smartmetrics.adapters.remote_write`)
and counted in the self-metrics. The thread is a daemon thread and sleeps on an `Event`: a stop ends
it between requests or retries at once, and a stop never waits for it longer than `STOP_WAIT`
(a request still in flight is left to its timeout, the process exits without it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx

from smartmetrics.adapters.exporter import Snapshot
from smartmetrics.adapters.remote_write import RemoteWriter
from smartmetrics.app.selfmetrics import SelfMetrics
from smartmetrics.config import Export, RemoteWrite

log = logging.getLogger(__name__)

STOP_WAIT = 1.0
"""Seconds `stop()` waits for a push under way."""


class RemoteWritePusher:
    """Pushes `snapshot()` to one receiver every `interval` seconds; `start()`, then `stop()`."""

    def __init__(self, config: RemoteWrite, snapshot: Callable[[], Snapshot], metrics: SelfMetrics,
                 clock: Callable[[], float], transport: httpx.BaseTransport | None = None):
        self.config, self.snapshot, self.metrics, self.clock = config, snapshot, metrics, clock
        self._stop = threading.Event()
        self._writer = RemoteWriter(config, transport, stop=self._stop)
        self._thread = threading.Thread(target=self._run, name="remote-write", daemon=True)

    def start(self) -> None:
        log.info("pushing the bands to %s every %gs", self._writer.url, self.config.interval)
        self._thread.start()

    def stop(self) -> None:
        """End the pushes; waits at most `STOP_WAIT` for one under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT)

    def push_once(self) -> None:
        """Push the current snapshot now and count the result."""
        started = self.clock()
        result = self._writer.push(self.snapshot(), started)
        self.metrics.record_push(result, started)
        log.debug("remote write: %d samples sent, %d failed", result.sent, result.failed)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = self.clock()
                self.push_once()
                self._stop.wait(max(0.0, started + self.config.interval - self.clock()))
        except Exception:  # never seen; but a pusher bug must not pass silently nor touch the daemon
            log.exception("remote write: the pusher stopped")
        finally:
            self._writer.close()


def start_remote_write(export: Export | None, snapshot: Callable[[], Snapshot], metrics: SelfMetrics,
                       clock: Callable[[], float]) -> RemoteWritePusher | None:
    """A started pusher for `export.remote_write`, or None without one or when its TLS files cannot be
    loaded (logged: the daemon serves `/metrics` regardless)."""
    config = export.remote_write if export is not None else None
    if config is None:
        return None
    try:
        pusher = RemoteWritePusher(config, snapshot, metrics, clock)
    except (OSError, ValueError) as exc:
        log.error("export.remote_write: cannot set up the client (%s); the bands are not pushed", exc)
        return None
    pusher.start()
    return pusher
