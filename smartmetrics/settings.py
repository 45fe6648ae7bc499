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
from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from smartmetrics.config import Baseline, Event, Holidays, Releases, cron_trigger
from smartmetrics.engine.calendars import Transitions, Widenings, Windows, on_days, utc_offsets

if TYPE_CHECKING:  # the fit machinery (pandas, scipy) is imported where a fit is set up, not to serve
    from smartmetrics.engine.ensemble import FitSettings, FittedSeries
    from smartmetrics.engine.series import Series


def forecast_margin(horizon: float) -> float:
    """Extra forecast beyond the horizon so a late or failed retrain does not leave a gap.

    >>> forecast_margin(86400) / 3600
    6.0
    """
    return max(0.25 * horizon, 3600.0)


def fit_settings(baseline: Baseline, alias: str = "", span: tuple[float, float] | None = None,
                 observed: Mapping[str, Windows] | None = None) -> FitSettings:
    """The pure fit's settings for a configured baseline (its `alias` read for what the metric is).
    Its planned events as windows (`planned_windows`): cron events over `span` (start, end in Unix
    seconds; none without it), PromQL events where `observed` found them."""
    from smartmetrics.engine.ensemble import FitSettings

    marked = {"settle": baseline.releases.settle, "absorb": baseline.releases.absorb} if baseline.releases else {}
    withdrawn, widened = planned_windows(baseline, span, observed)
    return FitSettings(
        sensitivity=baseline.sensitivity,
        curve_type=baseline.curve_type,
        models=tuple(baseline.models) if baseline.models else None,
        horizon=int(baseline.horizon + forecast_margin(baseline.horizon)),
        range=baseline.range, hints=f"{alias} {baseline.expr}",
        local_time=zone_transitions(baseline.timezone),
        holidays=holiday_days(baseline.calendar.holidays if baseline.calendar else None),
        withdrawn=withdrawn, widened=widened, min_history=int(min(baseline.min_history, baseline.history)),
        **marked,
    )


def baseline_fit(baseline: Baseline, sensitivity: str | float | None = None,
                 releases: Collection[int] = (), alias: str = "",
                 observed: Mapping[str, Windows] | None = None) -> Callable[[Series, int], FittedSeries]:
    """The daemon's fit of a configured baseline as a walk-forward fit function `(train, horizon)`, at
    another `sensitivity` if given; each training window is told the `releases` up to its end, and
    its cron events over itself and its horizon, as a retrain then would."""
    from smartmetrics.engine.ensemble import walk_forward_fit

    settings = fit_settings(baseline, alias, observed=observed)
    if sensitivity is not None:
        settings = dataclasses.replace(settings, sensitivity=sensitivity)
    memory: dict = {}  # each series' last classification, kept as a daily retrain keeps it
    fit = walk_forward_fit(settings, tuple(releases), memory)
    if not any(e.cron for e in events_of(baseline)):
        return fit

    def fit_with_cron(train: Series, horizon: int) -> FittedSeries:
        withdrawn, widened = planned_windows(baseline, (train.start, train.end + horizon), observed)
        return walk_forward_fit(dataclasses.replace(settings, withdrawn=withdrawn, widened=widened),
                                tuple(releases), memory)(train, horizon)
    return fit_with_cron


RELEASE_DEFAULTS = (Releases.model_fields["settle"].default, Releases.model_fields["absorb"].default)
"""A release's default `settle` and `absorb`: with them, the digest stays as it was before it counted them."""


def fit_fingerprint(baseline: Baseline) -> str:
    """A digest of everything in a baseline's config that changes its fit (not its alerting, unit, the
    `ahead` offsets it exports, or which markers are releases: only how a release moves the history,
    its `settle` and `absorb`, where they are not the defaults)."""
    fields = baseline.model_dump(mode="json", exclude={"alert", "releases", "unit", "ahead"})
    for key, default in (("timezone", "UTC"), ("calendar", None), ("min_history", "1d")):
        if fields[key] == default:  # the defaults leave the digest as it was before these knobs
            del fields[key]
    releases = baseline.releases
    if releases is not None and (releases.settle, releases.absorb) != RELEASE_DEFAULTS:
        fields["releases"] = {"settle": releases.settle, "absorb": releases.absorb}
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


def events_of(baseline: Baseline) -> tuple[Event, ...]:
    """The baseline's planned events (its own calendar's, or the top-level one's)."""
    return tuple(baseline.calendar.events) if baseline.calendar else ()


def planned_windows(baseline: Baseline, span: tuple[float, float] | None = None,
                    observed: Mapping[str, Windows] | None = None,
                    expr_only: bool = False) -> tuple[Windows, Widenings]:
    """The baseline's events (with `expr_only`, its PromQL events only) as the engine takes them:
    maintenance windows and expected changes (with factor and direction), each [start, end) in Unix
    seconds, ascending. A cron event counts over `span` (none without it), a PromQL event where
    `observed` (by event name) found it."""
    withdrawn: list[tuple[int, int]] = []
    widened: list[tuple[int, int, float, str]] = []
    for event in (e for e in events_of(baseline) if e.expr is not None or not expr_only):
        for start, end in event_windows(event, baseline.timezone, span, observed):
            if event.kind == "maintenance":
                withdrawn.append((start, end))
            else:
                widened.append((start, end, *event.widening()))
    return tuple(sorted(withdrawn)), tuple(sorted(widened))


def event_windows(event: Event, zone: str, span: tuple[float, float] | None = None,
                  observed: Mapping[str, Windows] | None = None) -> Windows:
    """One event's windows: its `start`/`end`, its cron's runs over `span`, or what `observed` holds for it."""
    if event.start is not None and event.end is not None:
        return ((int(event.start.timestamp()), int(event.end.timestamp())),)
    if event.cron is not None and event.duration is not None:
        return cron_windows(event.cron, int(event.duration), zone, *span) if span else ()
    return tuple((observed or {}).get(event.name, ()))


OPEN_END = 2**62
"""The end of a window that lasts until further notice."""


def live_windows(baseline: Baseline, on: Collection[str]) -> tuple[Windows, Widenings]:
    """The baseline's PromQL events named in `on` (on now, as the daemon last read their exprs) as
    `planned_windows`, each open at both ends: the served band is withdrawn or widened for them until
    a later read finds them off (their window and cron events are in the forecast table already).

    >>> from smartmetrics.config import parse_config
    >>> b = parse_config({"sources": {"p": {"url": "http://localhost:9090"}}, "baselines": {"q": {"expr": "up",
    ...     "calendar": {"events": [{"name": "freeze", "expr": "freeze_on", "kind": "expected_change", "widen": 3},
    ...     {"name": "upgrade", "start": "2026-03-01T02:00:00Z", "end": "2026-03-01T04:00:00Z"}]}}}}).baselines["q"]
    >>> live_windows(b, {"freeze"}) == ((), ((0, OPEN_END, 3.0, "both"),)), live_windows(b, ())
    (True, ((), ()))
    """
    return planned_windows(baseline, None, {name: ((0, OPEN_END),) for name in on}, expr_only=True)


def events_at(baseline: Baseline, now: float, on: Collection[str] = ()) -> list[tuple[str, str, bool]]:
    """(event, kind, on) at `now` for each event of the baseline (a PromQL event on if named in `on`,
    as the daemon last read its expr), and for its holidays as event `holiday` of kind `holiday`
    (today on its local clock).

    >>> from smartmetrics.config import parse_config
    >>> b = parse_config({"sources": {"p": {"url": "http://localhost:9090"}}, "baselines": {"q": {"expr": "up",
    ...     "calendar": {"holidays": {"extra": ["2026-03-01"]}, "events": [{"name": "backup", "cron": "0 2 * * 0",
    ...     "duration": "2h"}, {"name": "freeze", "expr": "freeze_on"}]}}}}).baselines["q"]
    >>> events_at(b, 1_772_330_400, on={"freeze"})  # Sunday 2026-03-01, 02:00 UTC
    [('backup', 'maintenance', True), ('freeze', 'maintenance', True), ('holiday', 'holiday', True)]
    """
    found = [(e.name, e.kind, e.name in on if e.expr is not None else
              any(s <= now < end for s, end in event_windows(e, baseline.timezone, (now, now + 1))))
             for e in events_of(baseline)]
    days = holiday_days(baseline.calendar.holidays if baseline.calendar else None)
    if days:
        local = now + int(utc_offsets(np.array([int(now)]), zone_transitions(baseline.timezone))[0])
        found.append(("holiday", "holiday", bool(on_days(np.array([local]), days)[0])))
    return found


def cron_windows(cron: str, duration: int, zone: str, start: float, end: float) -> Windows:
    """The windows [run, run + duration) of a crontab line on the clock of `zone` that overlap
    [start, end), the day of week read as cron reads it (0 or 7: Sunday).

    >>> [(datetime.fromtimestamp(s, timezone.utc).isoformat(), e - s) for s, e in cron_windows(
    ...     "0 2 * * 0", 7200, "Europe/Berlin", 1_711_843_200, 1_712_448_000)]  # 2024-03-31: the switch skips 02:00, 03:00 CEST
    [('2024-03-31T01:00:00+00:00', 7200)]
    """
    trigger = cron_trigger(cron, zone)
    moment = trigger.get_next_fire_time(None, datetime.fromtimestamp(start - duration + 1, timezone.utc))
    found: list[tuple[int, int]] = []
    while moment is not None and moment.timestamp() < end and len(found) < MAX_CRON_RUNS:
        found.append((int(moment.timestamp()), int(moment.timestamp()) + duration))
        moment = _next_run(trigger, moment)
    return tuple(found)


MAX_CRON_RUNS = 100_000  # a run a minute for ten weeks: more is a crontab no window list should hold


def _next_run(trigger: Any, moment: datetime) -> datetime | None:
    """The trigger's first run strictly after `moment` on the UTC clock. From a run in the hour a
    daylight-saving switch repeats, APScheduler 3 can answer with that same run again (it reads the
    wall-clock time's first occurrence): then look from an hour later on. Both occurrences of a
    wall-clock run in the repeated hour are runs.

    >>> night = cron_windows("0 * * * *", 600, "Europe/Berlin", 1_729_983_600, 1_729_998_000)  # 2024-10-27 23:00-03:00 UTC
    >>> [datetime.fromtimestamp(s, timezone.utc).strftime("%H:%M") for s, _ in night]  # 02:00 CEST, 02:00 CET, ...
    ['23:00', '00:00', '01:00', '02:00']
    """
    probe = moment + timedelta(seconds=1)
    for _ in range(3):
        found = trigger.get_next_fire_time(moment, probe)
        if found is None or found.timestamp() > moment.timestamp():
            return found
        probe += timedelta(hours=1)
    return None
