"""Markers read from the source: the times a baseline's `releases.expr` turns on, matched to each
series on its `releases.match` labels (the maths of what a release does is
`smartmetrics.engine.releases`), and the windows where a calendar event's `expr` is on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeAlias

from smartmetrics.adapters.source import FetchResult, fetch_baseline
from smartmetrics.config import Config, Sharding
from smartmetrics.engine.calendars import Windows, active_windows, merged_windows
from smartmetrics.engine.releases import release_onsets, releases_for
from smartmetrics.engine.series import Series


def fetch_expr(
    config: Config, alias: str, expr: str, history: float, end: float,
    fetch: Callable[..., FetchResult] = fetch_baseline, max_series: int | None = None, step: float | None = None,
) -> list[Series]:
    """The series of another `expr` over the last `history` before `end`, on baseline `alias`'s source
    and step (or `step`) (release markers, exported bands), every one of them: these series are not
    the baseline's, so no shard's share applies."""
    baseline = config.baselines[alias]
    update: dict = {"expr": expr, "history": history}
    if max_series is not None:
        update["max_series"] = max_series
    if step is not None:
        update["step"] = step
    every = {"baselines": {alias: baseline.model_copy(update=update)}, "sharding": Sharding()}
    return fetch(config.model_copy(update=every), alias, end=end).series


ReleasesOf: TypeAlias = Callable[[Series], tuple[int, ...]]


def series_releases(
    config: Config, alias: str, series: Collection[Series], since: float, now: float,
    fetch: Callable[..., FetchResult] = fetch_baseline,
) -> dict[str, tuple[int, ...]]:
    """Each series' release times in (since, now] by key, from the baseline's release markers matched
    on its `releases.match` labels; empty when the baseline has no `releases`. Raises `SourceError`."""
    if not series:
        return {}
    releases_of = fetch_releases_of(config, alias, since, now, fetch)
    return {s.key: releases_of(s) for s in series}


def fetch_releases_of(
    config: Config, alias: str, since: float, now: float, fetch: Callable[..., FetchResult] = fetch_baseline,
) -> ReleasesOf:
    """Each series' release times in (since, now], as a function of the series: the baseline's release
    markers are read once, here, and matched to each series on its `releases.match` labels when it
    comes (a retrain's series arrive in batches). No releases when the baseline has no `releases`.
    Raises `SourceError`."""
    releases = config.baselines[alias].releases
    if releases is None:
        return lambda series: ()
    markers = fetch_release_markers(config, alias, since, now, fetch)
    return lambda series: tuple(releases_for(series.labels, markers, releases.match))


def fetch_release_markers(
    config: Config, alias: str, since: float, now: float, fetch: Callable[..., FetchResult] = fetch_baseline,
) -> list[tuple[dict[str, str], int]]:
    """(marker labels, release time) for every release of a baseline's `releases.expr` in (since, now]."""
    baseline = config.baselines[alias]
    if baseline.releases is None:
        return []
    found = fetch_expr(config, alias, baseline.releases.expr, max(now - since, 2 * baseline.step), now, fetch,
                       max_series=10000)
    return [(s.labels, t) for s in found for t in release_onsets(s.timestamps, s.values) if t > since]


def fetch_event_windows(
    config: Config, alias: str, since: float, now: float, fetch: Callable[..., FetchResult] = fetch_baseline,
    step: float | None = None,
) -> dict[str, Windows]:
    """Where each PromQL calendar event of a baseline was on in (since, now], by event name: the runs
    of non-zero points of any of its series, read every `step` (default the baseline's), joined.
    Raises `SourceError`."""
    baseline = config.baselines[alias]
    every = step or baseline.step
    found: dict[str, Windows] = {}
    for event in baseline.calendar.events if baseline.calendar else ():
        if event.expr is not None:
            marks = fetch_expr(config, alias, event.expr, max(now - since, 2 * every), now, fetch,
                               max_series=10000, step=step)
            found[event.name] = merged_windows(tuple(w for s in marks for w in active_windows(
                s.timestamps, s.values, s.step)))
    return found
