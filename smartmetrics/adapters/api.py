"""Pure renderers for the daemon's JSON API: the baseline list and chart-ready series.

Chart JSON is what UI chart libraries (ECharts, Chart.js) take as is:
`{"data": [{"name": "...", "type": "line", "data": [{"x": <unix ms>, "y": <value>}, ...]}, ...]}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import re2

from smartmetrics.config import Config
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.engine.state import BaselineState, SeriesBand

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


MAX_MATCH = 4096  # characters of a `match` selector
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the client's 400, not a line on our stderr


class MatchError(ValueError):
    """A `match` parameter that is not a label selector."""


def _regex(pattern: str) -> Any:
    """`pattern` compiled with RE2 (PromQL's syntax), or a `MatchError` saying why not."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise MatchError(f"bad regular expression {pattern!r}: {why}") from None


def parse_matchers(text: str) -> list[tuple[str, str, Any]]:
    """(name, op, value) triples from a selector like `{model="a", tenant=~"t.*"}`; a regex value
    comes compiled with RE2, the engine PromQL itself uses: linear time, so no `match` can stall the
    server however it is written (`(.*){11}!` took 29 s with Python's engine).

    >>> [(n, op, getattr(v, "pattern", v)) for n, op, v in parse_matchers('{model="a", tenant=~"t.*"}')]
    [('model', '=', 'a'), ('tenant', '=~', 't.*')]
    """
    if len(text) > MAX_MATCH:
        raise MatchError(f"match is {len(text)} characters long; at most {MAX_MATCH}")
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out, pos = [], 0
    while pos < len(body.rstrip()):
        m = _MATCHER.match(body, pos)
        if not m:
            raise MatchError(f'cannot parse label matcher at "{body[pos:]}" (expected e.g. {{model="llama"}})')
        value: Any = re.sub(r"\\(.)", r"\1", m.group(3))
        if m.group(2) in ("=~", "!~"):
            value = _regex(value)
        out.append((m.group(1), m.group(2), value))
        pos = m.end()
    return out


def matches(labels: Mapping[str, str], matchers: Iterable[tuple[str, str, Any]]) -> bool:
    """Whether a label set satisfies every matcher (regexes anchored, as in PromQL).

    >>> matches({"model": "llama-3"}, parse_matchers('{model=~"llama.*", tenant!="b"}'))
    True
    """
    for name, op, value in matchers:
        have = labels.get(name, "")
        if op == "=":
            ok = have == value
        elif op == "!=":
            ok = have != value
        else:
            ok = (value.fullmatch(have) is not None) == (op == "=~")
        if not ok:
            return False
    return True


def render_baselines(config: Config, states: Mapping[str, BaselineState], now: float) -> dict[str, Any]:
    """The `/api/v1/baselines` document: one entry per configured baseline."""
    items = []
    for alias, baseline in config.baselines.items():
        state = states.get(alias)
        ends = [b.end for b in state.series] if state else []
        items.append({
            "name": alias,
            "expr": baseline.expr,
            "step": baseline.step,
            "sensitivity": baseline.sensitivity,
            "series": len(state.series) if state else 0,
            "fitted_at": state.fitted_at if state and state.series else None,
            "forecast_hours_remaining": round((min(ends) - now) / 3600, 3) if ends else None,
            "curve_types": _tally(b.meta.get("curve_type") for b in state.series) if state else {},
            "feedback_adjusted": sum(1 for b in state.series if b.meta.get("feedback")) if state else 0,
        })
    return {"status": "success", "data": items}


MAX_RANGE = 35 * 86400  # seconds a series request may span: the history and the forecast, with room


def parse_time(text: str, what: str) -> float:
    """Unix seconds from Unix seconds or RFC 3339 (`2026-12-06T10:00:00Z`, as the Prometheus API
    takes), finite and after 1970; a `ValueError` naming the parameter otherwise.

    >>> parse_time("1700000000", "start"), parse_time("2023-11-14T22:13:20Z", "end")
    (1700000000.0, 1700000000.0)
    """
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what}={text!r} is neither Unix seconds nor RFC 3339 "
                             "(e.g. 1700000000 or 2023-11-14T22:13:20Z)") from None
        if stamp.tzinfo is None:
            raise ValueError(f"{what}={text!r} has no time zone (add Z for UTC)") from None
        value = stamp.timestamp()
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise ValueError(f"{what}={text!r} is not a time between 1970 and 5138")
    return value


def parse_range(query: Mapping[str, str], now: float) -> tuple[float, float]:
    """(start, end) of a series request: defaults the last day to a day ahead; ordered and at most
    `MAX_RANGE` long, or a `ValueError` saying what to change."""
    start = parse_time(query["start"], "start") if "start" in query else now - 86400
    end = parse_time(query["end"], "end") if "end" in query else now + 86400
    if end < start:
        raise ValueError(f"end ({end:.0f}) is before start ({start:.0f})")
    if end - start > MAX_RANGE:
        raise ValueError(f"the range spans {(end - start) / 86400:.1f} days; at most {MAX_RANGE // 86400} "
                         "(narrow start and end)")
    return start, end


def _tally(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def _points(ts: np.ndarray, ys: np.ndarray, start: float, end: float) -> list[dict[str, float]]:
    keep = (ts >= start) & (ts <= end) & np.isfinite(ys)
    return [{"x": int(t) * 1000, "y": float(y)} for t, y in zip(ts[keep].tolist(), ys[keep].tolist())]


def render_band_lines(band: SeriesBand, start: float, end: float) -> list[dict[str, Any]]:
    """yhat, yhat_lower and yhat_upper of one series as chart lines within [start, end]."""
    ts = band.start + band.step * np.arange(len(band.yhat), dtype=np.int64)
    name = format_labels(band.labels)
    return [
        {"name": f"{name} {col}", "type": "line", "data": _points(ts, getattr(band, attr), start, end)}
        for col, attr in (("yhat", "yhat"), ("yhat_lower", "lower"), ("yhat_upper", "upper"))
    ]


def render_series_chart(
    bands: Iterable[SeriesBand], values: Iterable[Series], start: float, end: float,
    past: Mapping[str, Mapping[str, Series]] | None = None,
) -> dict[str, Any]:
    """The `/api/v1/baselines/<alias>/series` document: per series its value, then its band; where
    the stored forecast does not reach back to `start`, the band's earlier points come from `past`
    (by series key, then column: the exported band history the source holds)."""
    by_key = {s.key: s for s in values}
    data: list[dict[str, Any]] = []
    for band in bands:
        series = by_key.get(band.key)
        if series is not None:
            data.append({"name": f"{format_labels(band.labels)} value", "type": "line",
                         "data": _points(series.timestamps, series.values, start, end)})
        lines = render_band_lines(band, start, end)
        history = (past or {}).get(band.key, {})
        for line, column in zip(lines, BAND_COLUMNS, strict=True):
            if column in history:  # only what lies before the table: the live forecast wins where both exist
                earlier = history[column]
                line["data"] = _points(earlier.timestamps, earlier.values, start, min(end, band.start - 1)) + line["data"]
        data.extend(lines)
    return {"data": data}


BAND_COLUMNS = ("yhat", "yhat_lower", "yhat_upper")


def series_labels(fetched: Mapping[str, str]) -> dict[str, str]:
    """The series' own labels from one of its exported bands read back from the source: the fetch
    renames the band's `baseline` label to the first free `exported_..._baseline` name
    (`matrix.parse_labels`), so the longest such name is the band's and is dropped.

    >>> series_labels({"job": "api", "exported_baseline": "qps"})
    {'job': 'api'}
    >>> series_labels({"job": "api", "exported_baseline": "own", "exported_exported_baseline": "qps"})
    {'job': 'api', 'exported_baseline': 'own'}
    """
    name = "exported_baseline"
    while "exported_" + name in fetched:
        name = "exported_" + name
    return {k: v for k, v in fetched.items() if k != name}
