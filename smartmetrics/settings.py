"""A configured baseline as the engine's settings: what `smartmetrics.config` says, turned into the
pure fit's `FitSettings`, its walk-forward fit function, and the fingerprint that tells whether a
config change calls for a refit. The daemon, `fit`, `classify`, the backtest and `tune` all fit
through here, so they fit alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Collection
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from smartmetrics.config import Baseline, Event, Holidays
from smartmetrics.engine.calendars import Transitions, Windows
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, walk_forward_fit
from smartmetrics.engine.series import Series


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
        local_time=zone_transitions(baseline.timezone),
        holidays=holiday_days(baseline.calendar.holidays if baseline.calendar else None),
        withdrawn=maintenance_windows(baseline.calendar.events if baseline.calendar else ()),
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


def fit_fingerprint(baseline: Baseline) -> str:
    """A digest of everything in a baseline's config that changes its fit (not its alerting, releases, unit
    or the `ahead` offsets it exports)."""
    fields = baseline.model_dump(mode="json", exclude={"alert", "releases", "unit", "ahead"})
    for key, default in (("timezone", "UTC"), ("calendar", None)):
        if fields[key] == default:  # the defaults leave the digest as it was before calendars
            del fields[key]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


ZONE_YEARS = (1990, 2070)
"""The years whose daylight-saving switches a zone's transitions list (before: the first offset)."""


@functools.lru_cache(maxsize=64)
def zone_transitions(name: str) -> Transitions:
    """The UTC offsets of the IANA zone `name` as the engine takes them, `((since, offset), ...)`
    (`smartmetrics.engine.calendars`); () for a zone that is always UTC, so such fits stay as they were.
    Each switch is found from the offset at every UTC midnight, then to the second by bisection.

    >>> zone_transitions("UTC"), zone_transitions("Asia/Tokyo")[:1]
    ((), ((631152000, 32400),))
    >>> [(datetime.fromtimestamp(t, timezone.utc).isoformat(), o)
    ...  for t, o in zone_transitions("Europe/Berlin") if 1711e6 < t < 1730e6]
    [('2024-03-31T01:00:00+00:00', 7200), ('2024-10-27T01:00:00+00:00', 3600)]
    """
    zone = ZoneInfo(name)

    def offset(t: int) -> int:
        return int(datetime.fromtimestamp(t, zone).utcoffset().total_seconds())  # type: ignore[union-attr]

    start, end = (int(datetime(y, 1, 1, tzinfo=timezone.utc).timestamp()) // 86400 * 86400 for y in ZONE_YEARS)
    midnights = np.arange(start, end, 86400, dtype=np.int64)
    offsets = np.array([offset(int(t)) for t in midnights])
    found = [(start, int(offsets[0]))]
    for i in np.flatnonzero(np.diff(offsets)):
        lo, hi = int(midnights[i]), int(midnights[i + 1])  # offset(lo) is the old one, offset(hi) the new
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
        found.append((hi, offset(hi)))
    return () if all(o == 0 for _, o in found) else tuple(found)


HOLIDAY_YEARS = (2000, 2061)
"""The years whose holidays a country's calendar lists."""


def holiday_days(holidays: Holidays | None) -> tuple[int, ...]:
    """The holidays as the engine takes them: local day numbers (days since 1970-01-01), ascending.

    >>> days = holiday_days(Holidays(country="US", extra=[date(2026, 12, 24)]))
    >>> [str(date.fromordinal(EPOCH_DAY + d)) for d in days if 20_810 < d < 20_830]
    ['2026-12-24', '2026-12-25', '2027-01-01']
    """
    if holidays is None:
        return ()
    listed = _country_days(holidays.country, holidays.subdiv) if holidays.country else ()
    return tuple(sorted(set(listed) | {d.toordinal() - EPOCH_DAY for d in holidays.extra}))


EPOCH_DAY = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=32)
def _country_days(country: str, subdiv: str | None) -> tuple[int, ...]:
    import holidays  # loads every country's calendar: only for configs that name one

    listed = holidays.country_holidays(country, subdiv=subdiv, years=range(*HOLIDAY_YEARS))
    return tuple(sorted(d.toordinal() - EPOCH_DAY for d in listed))


def maintenance_windows(events: Collection[Event]) -> Windows:
    """The maintenance events as the engine takes them: [start, end) in Unix seconds, ascending."""
    return tuple(sorted((int(e.start.timestamp()), int(e.end.timestamp())) for e in events if e.kind == "maintenance"))
