"""PromQL calendar events followed while the daemon runs (issue 25).

A window or cron event is in each forecast table from the fit on; a PromQL event is known only once
its expr says so. The daemon reads each such expr every poll, over the last two points of a grid at
most a minute apart (`markers.fetch_event_windows`), and keeps which events are on: the snapshot
withdraws or widens the served band for them (`settings.live_windows`, `calendars.band_at`) and
`smartmetrics_calendar_event_active` says they are on. A read that fails changes nothing: the last
known state stays until a read succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from smartmetrics.adapters.markers import fetch_event_windows
from smartmetrics.adapters.source import FetchResult
from smartmetrics.config import Baseline, Config
from smartmetrics.engine.calendars import Widenings, Windows, in_windows
from smartmetrics.settings import events_of, live_windows

log = logging.getLogger(__name__)

POLL_STEP = 60.0
"""The finest grid an event's expr is read on (seconds; a baseline with a shorter step reads on its own)."""


def has_promql_events(baseline: Baseline) -> bool:
    """Whether any of the baseline's calendar events is given as a PromQL `expr`."""
    return any(e.expr is not None for e in events_of(baseline))


class EventWatch:
    """Which PromQL calendar events of each baseline are on, as last read."""

    def __init__(self) -> None:
        self.on: dict[str, frozenset[str]] = {}

    def poll(self, config: Config, alias: str, now: float, fetch: Callable[..., FetchResult]) -> bool:
        """Read the baseline's PromQL events at `now` (on: any of an expr's series non-zero at the last
        point); whether which are on changed. Raises `SourceError`, the last known state kept."""
        step = min(config.baselines[alias].step, POLL_STEP)
        found = fetch_event_windows(config, alias, now - 2 * step, now, fetch, step=step)
        on = frozenset(name for name, windows in found.items() if in_windows(np.array([now]), windows).any())
        if on == self.on.get(alias, frozenset()):
            return False
        log.info("%s: calendar events on now: %s (before: %s)", alias, ", ".join(sorted(on)) or "none",
                 ", ".join(sorted(self.on.get(alias, ()))) or "none")
        self.on[alias] = on
        return True

    def windows(self, config: Config) -> dict[str, tuple[Windows, Widenings]]:
        """Per configured baseline with an event on, its events' windows as the snapshot applies them."""
        return {alias: live_windows(config.baselines[alias], on) for alias, on in sorted(self.on.items())
                if on and alias in config.baselines}

    def active(self, alias: str) -> frozenset[str]:
        """The baseline's PromQL events on as last read."""
        return self.on.get(alias, frozenset())
