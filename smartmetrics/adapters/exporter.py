"""Export the bands: a prometheus-client Collector over an immutable snapshot of the store.

The daemon builds a new `Snapshot` after each fit and swaps it in with one reference assignment, so a
scrape always sees one consistent state and never waits for a fit. At scrape time every series'
forecast table is interpolated at the current time; a series whose table has run out (or has not
started) is left out rather than exported as a stale guess. Exposition, e.g.:

    smartmetrics_yhat{baseline="qps",model="llama"} 120.5
    smartmetrics_yhat_lower{baseline="qps",model="llama"} 98.0
    smartmetrics_yhat_upper{baseline="qps",model="llama"} 141.2
    smartmetrics_stuck_after_seconds{baseline="qps",model="llama"} 1800.0
    smartmetrics_mean_upper{baseline="errors",model="llama"} 0.42
    smartmetrics_mean_lower{baseline="errors",model="llama"} 0.013
    smartmetrics_band_coverage{baseline="qps",model="llama"} 0.9993

`smartmetrics_band_coverage` is the share of the points since the last retrain inside the band served
for them (`smartmetrics.engine.realised`). The three before it are per-series constants from the fit, exported only with a current band and only
for series that have them in their training metadata: `stuck_after` > 0 for a series that normally
changes at almost every step (the stuck-value alert joins on it), and `sustained` limits for the mean
over a trailing window of a sparse or noisy series (the sustained-deviation alert joins on them;
either limit may be absent). The window itself is not exported: it follows from the step (an hour,
or three steps where longer), so it is the same for every series of a baseline and the generated
rule holds it. Stored values that are not finite numbers count as absent, never as an error.

A baseline with `ahead` offsets (issue 25: autoscaling) also exports its forecast that far ahead,
interpolated the same way at `now + ahead`, labelled with the offset as configured:

    smartmetrics_yhat_ahead{baseline="qps",model="llama",ahead="15m"} 131.0
    smartmetrics_yhat_upper_ahead{baseline="qps",model="llama",ahead="15m"} 152.4

A series whose table does not reach `now + ahead` has no such sample; without any `ahead` in the
snapshot these families are not rendered at all, so other baselines cost and read exactly as before.

A baseline's PromQL calendar events that are on (the snapshot's `events`, which the daemon swaps in
as it reads their exprs) change its current band as a window event changes the table: a maintenance
exports no band (nor the constants that go with it), an expected change widens it. The forecast
ahead stays as the table has it: how long such an event lasts is not known in advance.
"""

from __future__ import annotations

import copy
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from smartmetrics.engine.calendars import Widenings, Windows, band_at
from smartmetrics.engine.ranges import clip_values, finite_number, stored_range
from smartmetrics.engine.realised import KEY as REALISED
from smartmetrics.engine.realised import realised_coverage
from smartmetrics.engine.state import BaselineState, stack_columns

BAND_METRICS = (
    ("smartmetrics_yhat", "Expected value of the series, learned from its history."),
    ("smartmetrics_yhat_lower", "Lower edge of the series' normal band."),
    ("smartmetrics_yhat_upper", "Upper edge of the series' normal band."),
)
STUCK_METRIC = (
    "smartmetrics_stuck_after_seconds",
    ("Seconds without any change in value after which the series counts as stuck (it normally changes "
     "at almost every step); only for series with stuck detection."),
)
MEAN_UPPER_METRIC = (
    "smartmetrics_mean_upper",
    ("Upper limit for the series' mean over its trailing window (an hour, or three steps where longer); "
     "a mean above it is a sustained deviation. Only for series with such limits."),
)
MEAN_LOWER_METRIC = (
    "smartmetrics_mean_lower",
    ("Lower limit for the series' mean over its trailing window (an hour, or three steps where longer); "
     "a mean below it is a sustained deviation. Only for series with such limits."),
)
COVERAGE_METRIC = (
    "smartmetrics_band_coverage",
    ("Share of the series' points since its last retrain that fell inside the band served for them "
     "(smartmetrics.engine.realised); compare with the sensitivity's nominal coverage. Only once a point was seen."),
)
AHEAD_METRICS = (
    ("smartmetrics_yhat_ahead",
     "Expected value of the series `ahead` after now (its stored forecast), for autoscaling; only for "
     "baselines with ahead offsets."),
    ("smartmetrics_yhat_upper_ahead",
     "Upper edge of the series' normal band `ahead` after now (its stored forecast), for autoscaling; only "
     "for baselines with ahead offsets."),
)
_AHEAD_ROWS = (0, 2)  # yhat and upper in the stacked tables, in AHEAD_METRICS order
_INVALID = re.compile(r"[^A-Za-z0-9_]")
CONSTANT_METRICS = (STUCK_METRIC, MEAN_UPPER_METRIC, MEAN_LOWER_METRIC, COVERAGE_METRIC)
"""Per-series constants of the fit, in the order `constant_values` gives them."""


@dataclass(frozen=True)
class MeanLimits:
    """A stored series' limits for its mean over the trailing `window` seconds (either may be None)."""

    window: float
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class _Constants:
    """One per-series constant of a baseline: the series that have it, its values and exposition lines."""

    rows: np.ndarray  # (k,) int64
    values: tuple[float, ...]  # (k,)
    lines: tuple[str, ...]  # (k,) rendered once per snapshot (the value never changes)


@dataclass(frozen=True)
class _Ahead:
    """One `ahead` offset of a baseline: its seconds and every series' label set with `ahead` added."""

    seconds: float
    labels: tuple[dict[str, str], ...]
    label_text: tuple[str, ...]  # rendered once per snapshot, like `_Tables.label_text`


@dataclass(frozen=True)
class _Tables:
    """One baseline's forecast tables stacked for vectorised interpolation."""

    alias: str
    series_labels: tuple[dict[str, str], ...]  # as stored
    label_text: tuple[str, ...]  # `{baseline="qps",model="a"}`, rendered once per snapshot
    start: np.ndarray  # (n,) int64
    step: np.ndarray  # (n,) int64
    points: np.ndarray  # (n,) int64
    values: Sequence[np.ndarray]  # yhat, lower, upper: each (n, width) float32
    table_bounds: tuple[np.ndarray | None, np.ndarray | None]  # `bounds` as (n,) float32; None: no series has one
    constants: tuple[_Constants, ...]  # one per CONSTANT_METRICS family
    bounds: np.ndarray  # (2, n) float64: each series' natural range, lo and hi (NaN: unbounded)
    ahead: tuple[_Ahead, ...] = ()  # the baseline's ahead offsets, if any

    @functools.cached_property
    def labels(self) -> tuple[dict[str, str], ...]:
        """Every series' exported label set, built on first use: `/metrics` needs only `label_text`."""
        return tuple(export_labels(self.alias, x) for x in self.series_labels)


def export_labels(alias: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The exported label set: `baseline` plus the series' own labels (its `baseline` renamed).

    >>> export_labels("qps", {"job": "api", "baseline": "x"})
    {'baseline': 'qps', 'job': 'api', 'exported_baseline': 'x'}
    """
    out = {"baseline": alias}
    for name, value in labels.items():
        if name == "__name__":
            continue
        exported = "exported_baseline" if name == "baseline" else label_name(name)
        while exported in out:  # `a.b` and `a_b` both present: the later one moves aside
            exported = "exported_" + exported
        out[exported] = str(value)
    return out


def label_name(name: str) -> str:
    """A label name the text exposition format accepts: characters other than `[A-Za-z0-9_]` become
    `_`, and a leading digit gets a `_` before it, as Prometheus' own conventions map OpenTelemetry
    names (the store keeps the original, so the source is still queried by it).

    >>> label_name("service.name"), label_name("1st"), label_name("ok_name"), label_name("")
    ('service_name', '_1st', 'ok_name', '_')
    """
    cleaned = _INVALID.sub("_", name) or "_"
    return "_" + cleaned if cleaned[0].isdigit() else cleaned


def ahead_labels(labels: Mapping[str, str], spelling: str) -> dict[str, str]:
    """An exported label set with `ahead` added; a series' own `ahead` label becomes `exported_ahead`.

    >>> ahead_labels({"baseline": "qps", "ahead": "x", "m": "a"}, "15m")
    {'baseline': 'qps', 'm': 'a', 'exported_ahead': 'x', 'ahead': '15m'}
    """
    out = {k: v for k, v in labels.items() if k != "ahead"}
    if "ahead" in labels:
        moved = "exported_ahead"
        while moved in out:
            moved = "exported_" + moved
        out[moved] = labels["ahead"]
    out["ahead"] = spelling
    return out


def _training(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    training = meta.get("training") if isinstance(meta, Mapping) else None
    return training if isinstance(training, Mapping) else None


def stored_stuck_after(meta: Mapping[str, Any]) -> float:
    """A stored series' `training.stuck_after` in seconds; 0 when absent, not positive or not a number.

    >>> stored_stuck_after({"training": {"stuck_after": 1800}}), stored_stuck_after({})
    (1800.0, 0.0)
    """
    return _stuck_after(_training(meta))


def _stuck_after(training: Mapping[str, Any] | None) -> float:
    value = finite_number(training.get("stuck_after")) if training is not None else None
    return value if value is not None and value > 0 else 0.0


def stored_mean_limits(meta: Mapping[str, Any]) -> MeanLimits | None:
    """A stored series' `training.sustained` limits; None when absent, without a positive window, without
    a finite limit, or with a lower limit not below the upper one (a limit that is not a finite number
    counts as absent).

    >>> stored_mean_limits({"training": {"sustained": {"window": 3600, "lower": None, "upper": 2.5}}})
    MeanLimits(window=3600.0, lower=None, upper=2.5)
    >>> stored_mean_limits({"training": {"sustained": {"window": 3600, "lower": 3, "upper": "2"}}})
    MeanLimits(window=3600.0, lower=3.0, upper=None)
    """
    return _mean_limits(_training(meta))


def _mean_limits(training: Mapping[str, Any] | None) -> MeanLimits | None:
    sustained = training.get("sustained") if training is not None else None
    if not isinstance(sustained, Mapping):
        return None
    window, lower, upper = (finite_number(sustained.get(k)) for k in ("window", "lower", "upper"))
    if window is None or window <= 0 or (lower is None and upper is None):
        return None
    if lower is not None and upper is not None and lower >= upper:
        return None
    return MeanLimits(window, lower, upper)


_NO_LIMITS = MeanLimits(0.0, None, None)


def constant_values(meta: Mapping[str, Any]) -> tuple[float | None, ...]:
    """A stored series' per-series constants in `CONSTANT_METRICS` order (None: not exported); its training
    metadata looked up once (this runs for every series at every start-up)."""
    training = _training(meta)
    limits = _mean_limits(training) or _NO_LIMITS
    coverage = realised_coverage(meta) if isinstance(meta, Mapping) and REALISED in meta else None
    return _stuck_after(training) or None, limits.upper, limits.lower, coverage


def render_label_text(labels: Mapping[str, str]) -> str:
    """Labels in the text exposition format, values escaped.

    >>> render_label_text({"a": 'say "hi"\\n'})
    '{a="say \\\\"hi\\\\"\\\\n"}'
    """
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _stack(state: BaselineState, ahead: Sequence[tuple[str, float]] = ()) -> _Tables:
    values = state.tables if state.tables is not None else stack_columns(state.series, min_width=1)
    ranges = _ranges(state)
    label_text = tuple(_export_text(state.alias, b.labels) for b in state.series)
    per_series = [constant_values(b.meta) for b in state.series]
    labels = tuple(export_labels(state.alias, b.labels) for b in state.series) if ahead else ()
    return _Tables(
        alias=state.alias,
        series_labels=tuple(b.labels for b in state.series),
        label_text=label_text,
        start=np.array([b.start for b in state.series], dtype=np.int64),
        step=np.array([b.step for b in state.series], dtype=np.int64),
        points=np.array([len(b.yhat) for b in state.series], dtype=np.int64),
        values=values,
        table_bounds=_table_bounds(ranges),
        constants=tuple(_constants(name, label_text, [v[j] for v in per_series])
                        for j, (name, _) in enumerate(CONSTANT_METRICS)),
        bounds=ranges,
        ahead=tuple(_ahead(labels, spelling, seconds) for spelling, seconds in ahead),
    )


def _export_text(alias: str, labels: Mapping[str, str]) -> str:
    """`render_label_text(export_labels(alias, labels))`, the exported names and the text around the
    values worked out once per set of label names (the series of a baseline mostly share one)."""
    named, template = _export_template(tuple(labels))
    values = [v for k, v in labels.items() if k != "__name__"] if named else labels.values()
    return template % tuple(_escape(str(v)) for v in (alias, *values))


@functools.lru_cache(maxsize=4096)
def _export_template(names: tuple[str, ...]) -> tuple[bool, str]:
    """(whether `__name__` is among `names`, the label text with a `%s` per value, `baseline`'s first)."""
    exported = export_labels("", dict.fromkeys(names, ""))  # the names `export_labels` gives, in its order
    return "__name__" in names, "{" + ",".join(f'{k}="%s"' for k in exported) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _ranges(state: BaselineState) -> np.ndarray:
    """(2, n) float64: every series' stored natural range, lo and hi (NaN: no bound on that side)."""
    ranges = [stored_range(_training(b.meta)) or (None, None) for b in state.series]
    return np.array([[np.nan if r[k] is None else r[k] for r in ranges] for k in (0, 1)], dtype=np.float64)


def _table_bounds(ranges: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`_ranges`' lower and upper bounds as float32 (the bound as a float32 table holds it), NaN where a
    series has no such bound; None for a side no series has a bound on."""
    return tuple(None if np.isnan(side).all() else side.astype(np.float32) for side in ranges)


def _in_range(values: np.ndarray, bounds: tuple[np.ndarray | None, np.ndarray | None]) -> np.ndarray:
    """(3, n) table values kept inside their series' natural range (what a release or a follow moved must
    not leave it), the lower bound first, then the upper, as `clip_values` does. Done on the values a
    scrape reads, not on the tables: the store's tables are served as read, without a copy."""
    for beyond, bound in zip((np.less, np.greater), bounds):
        if bound is not None:
            with np.errstate(invalid="ignore"):
                values = np.where(beyond(values, bound), bound, values)
    return values


def _ahead(labels: tuple[dict[str, str], ...], spelling: str, seconds: float) -> _Ahead:
    moved = tuple(ahead_labels(x, spelling) for x in labels)
    return _Ahead(float(seconds), moved, tuple(render_label_text(x) for x in moved))


def _constants(name: str, label_text: tuple[str, ...], values: list[float | None]) -> _Constants:
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    return _Constants(np.array([i for i, _ in present], dtype=np.int64), tuple(v for _, v in present),
                      tuple(f"{name}{label_text[i]} {v!r}\n" for i, v in present))


def interpolate_tables(tables: _Tables, now: float) -> tuple[np.ndarray, np.ndarray]:
    """(values (3, n) at `now`, mask of series with a finite band at `now`)."""
    n = len(tables.label_text)
    if n == 0:
        return np.empty((3, 0)), np.zeros(0, dtype=bool)
    pos = (now - tables.start) / tables.step
    inside = (pos >= 0) & (pos <= tables.points - 1)
    pos = np.clip(pos, 0, np.maximum(tables.points - 1, 0))
    i = np.minimum(np.floor(pos).astype(np.int64), np.maximum(tables.points - 2, 0))
    frac = np.where(tables.points > 1, pos - i, 0.0)
    rows = np.arange(n)
    left = _in_range(np.array([table[rows, i] for table in tables.values]), tables.table_bounds).astype(np.float64)
    right = _in_range(np.array([table[rows, np.minimum(i + 1, table.shape[1] - 1)] for table in tables.values]),
                      tables.table_bounds).astype(np.float64)
    out = left + frac * (right - left)
    out = np.where(frac == 0, left, out)  # exact grid hits need no neighbour (which may be a gap)
    ok = inside & np.isfinite(out).all(axis=0)
    return out, ok


class Snapshot:
    """An immutable view of every baseline, ready to interpolate; build a new one to change it."""

    def __init__(self, states: Mapping[str, BaselineState],
                 ahead: Mapping[str, Sequence[tuple[str, float]]] | None = None,
                 events: Mapping[str, tuple[Windows, Widenings]] | None = None):
        """`ahead`: per baseline alias, its (label as configured, seconds) offsets (`Baseline.ahead_offsets`);
        `events`: per alias, the live PromQL events' windows (`settings.live_windows`)."""
        ahead = ahead or {}
        self._tables = {alias: _stack(state, ahead.get(alias, ())) for alias, state in sorted(states.items())}
        self.states = dict(states)
        self.has_ahead = any(t.ahead for t in self._tables.values())
        self.events = dict(events or {})

    def with_events(self, events: Mapping[str, tuple[Windows, Widenings]]) -> Snapshot:
        """This snapshot with other live `events` (the stacked tables shared, not rebuilt)."""
        other = copy.copy(self)
        other.events = dict(events)
        return other

    def _current(self, now: float) -> list[tuple[_Tables, np.ndarray, np.ndarray]]:
        """Each baseline's tables, every series' band at `now` and which series have one, with the
        baseline's live events applied (`calendars.band_at`, widened edges kept in the natural range)."""
        found = []
        for alias, tables in self._tables.items():
            values, ok = interpolate_tables(tables, now)
            if alias in self.events:
                values, ok = band_at(now, values, ok, *self.events[alias])
                values[1:] = clip_values(values[1:], tables.bounds[:1], tables.bounds[1:])
            found.append((tables, values, ok))
        return found

    def series_count(self) -> int:
        return sum(len(t.label_text) for t in self._tables.values())

    def values_at(self, now: float) -> Iterator[tuple[dict[str, str], float, float, float]]:
        """(labels, yhat, lower, upper) for every series with a band at `now`."""
        for tables, out, ok in self._current(now):
            for idx in np.flatnonzero(ok):
                yield tables.labels[idx], float(out[0, idx]), float(out[1, idx]), float(out[2, idx])

    def ahead_at(self, now: float) -> Iterator[tuple[dict[str, str], float, float]]:
        """(labels with `ahead`, yhat, upper) at `now + ahead` for every ahead offset of every series whose
        table reaches that far."""
        for offset, out, ok in self._ahead_values(now):
            for idx in np.flatnonzero(ok).tolist():
                yield offset.labels[idx], float(out[0, idx]), float(out[2, idx])

    def _ahead_values(self, now: float) -> Iterator[tuple[_Ahead, np.ndarray, np.ndarray]]:
        for tables in self._tables.values():
            for offset in tables.ahead:
                yield offset, *interpolate_tables(tables, now + offset.seconds)

    def constants_at(self, now: float) -> Iterator[tuple[int, dict[str, str], float]]:
        """(index in `CONSTANT_METRICS`, labels, value) for every per-series constant of a series with a
        band at `now`."""
        for tables, _, ok in self._current(now):
            for j, constants in enumerate(tables.constants):
                for k in np.flatnonzero(ok[constants.rows]).tolist():
                    yield j, tables.labels[constants.rows[k]], constants.values[k]

    def render_text(self, now: float) -> str:
        """The band and per-series constant families in the Prometheus text format, as `BandCollector`
        yields them.

        Label strings are rendered once per snapshot, so a scrape costs one interpolation and one
        float formatting per value: 100k series scrape in well under a second.
        """
        current = self._current(now)
        chunks = []
        for row, (name, doc) in enumerate(BAND_METRICS):
            chunks.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
            for tables, out, ok in current:
                idx = np.flatnonzero(ok).tolist()
                text = tables.label_text
                chunks.extend(f"{name}{text[i]} {v!r}\n" for i, v in zip(idx, out[row, idx].tolist()))
        for j, (name, doc) in enumerate(CONSTANT_METRICS):
            chunks.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
            for tables, _, ok in current:
                constants = tables.constants[j]
                chunks.extend(constants.lines[k] for k in np.flatnonzero(ok[constants.rows]).tolist())
        if self.has_ahead:
            ahead = list(self._ahead_values(now))
            for row, (name, doc) in zip(_AHEAD_ROWS, AHEAD_METRICS):
                chunks.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
                for offset, out, ok in ahead:
                    idx = np.flatnonzero(ok).tolist()
                    text = offset.label_text
                    chunks.extend(f"{name}{text[i]} {v!r}\n" for i, v in zip(idx, out[row, idx].tolist()))
        return "".join(chunks)

    def remaining_hours(self, now: float) -> dict[str, float]:
        """Per baseline, hours until its earliest-ending forecast table runs out (negative: expired)."""
        result = {}
        for alias, tables in self._tables.items():
            if len(tables.label_text):
                ends = tables.start + (tables.points - 1) * tables.step
                result[alias] = float(ends.min() - now) / 3600.0
        return result


EMPTY = Snapshot({})


class BandCollector(Collector):
    """Yields `smartmetrics_yhat`, `_lower`, `_upper`, the per-series constants (`CONSTANT_METRICS`) and,
    where a baseline has ahead offsets, `AHEAD_METRICS`, for the current snapshot at the current time."""

    def __init__(self, snapshot: Callable[[], Snapshot], clock: Callable[[], float] = time.time):
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        families = [Metric(name, doc, "gauge") for name, doc in BAND_METRICS]
        snapshot, now = self._snapshot(), self._clock()
        for labels, *values in snapshot.values_at(now):
            for family, value in zip(families, values):
                family.add_sample(family.name, labels, value)
        constants = [Metric(name, doc, "gauge") for name, doc in CONSTANT_METRICS]
        for j, labels, value in snapshot.constants_at(now):
            constants[j].add_sample(constants[j].name, labels, value)
        yield from (*families, *constants)
        if snapshot.has_ahead:
            ahead = [Metric(name, doc, "gauge") for name, doc in AHEAD_METRICS]
            for labels, *values in snapshot.ahead_at(now):
                for family, value in zip(ahead, values):
                    family.add_sample(family.name, labels, value)
            yield from ahead

    def describe(self) -> Iterator[Metric]:
        metrics = (*BAND_METRICS, *CONSTANT_METRICS, *AHEAD_METRICS)
        return iter(Metric(name, doc, "gauge") for name, doc in metrics)
