"""Export the bands: a prometheus-client Collector over an immutable snapshot of the store.

The daemon builds a new `Snapshot` after each fit and swaps it in with one reference assignment, so a
scrape always sees one consistent state and never waits for a fit. At scrape time every series'
forecast table is interpolated at the current time; a series whose table has run out (or has not
started) is left out rather than exported as a stale guess. Exposition, e.g.:

    smartmetrics_yhat{baseline="qps",model="llama"} 120.5
    smartmetrics_yhat_lower{baseline="qps",model="llama"} 98.0
    smartmetrics_yhat_upper{baseline="qps",model="llama"} 141.2
    smartmetrics_stuck_after_seconds{baseline="qps",model="llama"} 1800.0

The last is a per-series constant from the fit, exported only with a current band and only for a
series whose fit found that it normally changes at almost every step (`stuck_after` > 0 in its
training metadata); the stuck-value alert of `smartmetrics rules` joins on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from smartmetrics.store import BaselineState, stack_columns

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


@dataclass(frozen=True)
class _Tables:
    """One baseline's forecast tables stacked for vectorised interpolation."""

    labels: tuple[dict[str, str], ...]
    label_text: tuple[str, ...]  # `{baseline="qps",model="a"}`, rendered once per snapshot
    start: np.ndarray  # (n,) int64
    step: np.ndarray  # (n,) int64
    points: np.ndarray  # (n,) int64
    values: np.ndarray  # (3, n, width) float32: yhat, lower, upper
    stuck_rows: np.ndarray  # (k,) int64: the series with stuck detection
    stuck_after: np.ndarray  # (k,) float64: their stuck_after, seconds
    stuck_lines: tuple[str, ...]  # (k,) their exposition lines, rendered once per snapshot (a constant)


def export_labels(alias: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The exported label set: `baseline` plus the series' own labels (its `baseline` renamed).

    >>> export_labels("qps", {"job": "api", "baseline": "x"})
    {'baseline': 'qps', 'job': 'api', 'exported_baseline': 'x'}
    """
    out = {"baseline": alias}
    for name, value in labels.items():
        if name == "__name__":
            continue
        out["exported_baseline" if name == "baseline" else name] = value
    return out


def stored_stuck_after(meta: Mapping[str, Any]) -> float:
    """A stored series' `training.stuck_after` in seconds; 0 when absent, not positive or not a number.

    >>> stored_stuck_after({"training": {"stuck_after": 1800}}), stored_stuck_after({})
    (1800.0, 0.0)
    """
    training = meta.get("training") if isinstance(meta, Mapping) else None
    value = training.get("stuck_after") if isinstance(training, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return 0.0
    return float(value)


def render_label_text(labels: Mapping[str, str]) -> str:
    """Labels in the text exposition format, values escaped.

    >>> render_label_text({"a": 'say "hi"\\n'})
    '{a="say \\\\"hi\\\\"\\\\n"}'
    """
    body = ",".join(
        f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        for k, v in labels.items()
    )
    return "{" + body + "}"


def _stack(state: BaselineState) -> _Tables:
    values = stack_columns(state.series, min_width=1)
    labels = tuple(export_labels(state.alias, b.labels) for b in state.series)
    label_text = tuple(render_label_text(x) for x in labels)
    stuck = [(i, s) for i, s in enumerate(stored_stuck_after(b.meta) for b in state.series) if s > 0]
    return _Tables(
        labels=labels,
        label_text=label_text,
        start=np.array([b.start for b in state.series], dtype=np.int64),
        step=np.array([b.step for b in state.series], dtype=np.int64),
        points=np.array([len(b.yhat) for b in state.series], dtype=np.int64),
        values=values,
        stuck_rows=np.array([i for i, _ in stuck], dtype=np.int64),
        stuck_after=np.array([s for _, s in stuck], dtype=np.float64),
        stuck_lines=tuple(f"{STUCK_METRIC[0]}{label_text[i]} {s!r}\n" for i, s in stuck),
    )


def interpolate_tables(tables: _Tables, now: float) -> tuple[np.ndarray, np.ndarray]:
    """(values (3, n) at `now`, mask of series with a finite band at `now`)."""
    n = len(tables.labels)
    if n == 0:
        return np.empty((3, 0)), np.zeros(0, dtype=bool)
    pos = (now - tables.start) / tables.step
    inside = (pos >= 0) & (pos <= tables.points - 1)
    pos = np.clip(pos, 0, np.maximum(tables.points - 1, 0))
    i = np.minimum(np.floor(pos).astype(np.int64), np.maximum(tables.points - 2, 0))
    frac = np.where(tables.points > 1, pos - i, 0.0)
    rows = np.arange(n)
    left = tables.values[:, rows, i]
    right = tables.values[:, rows, np.minimum(i + 1, tables.values.shape[2] - 1)]
    left, right = left.astype(np.float64), right.astype(np.float64)
    out = left + frac * (right - left)
    out = np.where(frac == 0, left, out)  # exact grid hits need no neighbour (which may be a gap)
    ok = inside & np.isfinite(out).all(axis=0)
    return out, ok


class Snapshot:
    """An immutable view of every baseline, ready to interpolate; build a new one to change it."""

    def __init__(self, states: Mapping[str, BaselineState]):
        self._tables = {alias: _stack(state) for alias, state in sorted(states.items())}
        self.states = dict(states)

    def series_count(self) -> int:
        return sum(len(t.labels) for t in self._tables.values())

    def values_at(self, now: float) -> Iterator[tuple[dict[str, str], float, float, float]]:
        """(labels, yhat, lower, upper) for every series with a band at `now`."""
        for tables in self._tables.values():
            out, ok = interpolate_tables(tables, now)
            for idx in np.flatnonzero(ok):
                yield tables.labels[idx], float(out[0, idx]), float(out[1, idx]), float(out[2, idx])

    def stuck_after_at(self, now: float) -> Iterator[tuple[dict[str, str], float]]:
        """(labels, stuck_after seconds) for every series with stuck detection and a band at `now`."""
        for tables in self._tables.values():
            current = interpolate_tables(tables, now)[1][tables.stuck_rows]
            for row, seconds in zip(tables.stuck_rows[current].tolist(), tables.stuck_after[current].tolist()):
                yield tables.labels[row], seconds

    def render_text(self, now: float) -> str:
        """The band and stuck-after families in the Prometheus text format, as `BandCollector` yields them.

        Label strings are rendered once per snapshot, so a scrape costs one interpolation and one
        float formatting per value: 100k series scrape in well under a second.
        """
        current = [(t, *interpolate_tables(t, now)) for t in self._tables.values()]
        chunks = []
        for row, (name, doc) in enumerate(BAND_METRICS):
            chunks.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
            for tables, out, ok in current:
                idx = np.flatnonzero(ok).tolist()
                text = tables.label_text
                chunks.extend(f"{name}{text[i]} {v!r}\n" for i, v in zip(idx, out[row, idx].tolist()))
        chunks.append(f"# HELP {STUCK_METRIC[0]} {STUCK_METRIC[1]}\n# TYPE {STUCK_METRIC[0]} gauge\n")
        for tables, _, ok in current:
            lines = tables.stuck_lines
            chunks.extend(lines[j] for j in np.flatnonzero(ok[tables.stuck_rows]).tolist())
        return "".join(chunks)

    def remaining_hours(self, now: float) -> dict[str, float]:
        """Per baseline, hours until its earliest-ending forecast table runs out (negative: expired)."""
        result = {}
        for alias, tables in self._tables.items():
            if len(tables.labels):
                ends = tables.start + (tables.points - 1) * tables.step
                result[alias] = float(ends.min() - now) / 3600.0
        return result


EMPTY = Snapshot({})


class BandCollector(Collector):
    """Yields `smartmetrics_yhat`, `_lower`, `_upper` and `smartmetrics_stuck_after_seconds` for the current
    snapshot at the current time."""

    def __init__(self, snapshot: Callable[[], Snapshot], clock: Callable[[], float] = time.time):
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        families = [Metric(name, doc, "gauge") for name, doc in BAND_METRICS]
        snapshot, now = self._snapshot(), self._clock()
        for labels, *values in snapshot.values_at(now):
            for family, value in zip(families, values):
                family.add_sample(family.name, labels, value)
        stuck = Metric(*STUCK_METRIC, "gauge")
        for labels, seconds in snapshot.stuck_after_at(now):
            stuck.add_sample(stuck.name, labels, seconds)
        yield from (*families, stuck)

    def describe(self) -> Iterator[Metric]:
        return iter(Metric(name, doc, "gauge") for name, doc in (*BAND_METRICS, STUCK_METRIC))
