"""Pure renderers for the daemon's JSON API: the baseline list and chart-ready series.

Chart JSON is what UI chart libraries (ECharts, Chart.js) take as is:
`{"data": [{"name": "...", "type": "line", "data": [{"x": <unix ms>, "y": <value>}, ...]}, ...]}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from smartmetrics.config import Config
from smartmetrics.series import Series, format_labels
from smartmetrics.store import BaselineState, SeriesBand

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class MatchError(ValueError):
    """A `match` parameter that is not a label selector."""


def parse_matchers(text: str) -> list[tuple[str, str, str]]:
    """(name, op, value) triples from a selector like `{model="a", tenant=~"t.*"}`.

    >>> parse_matchers('{model="a", tenant=~"t.*"}')
    [('model', '=', 'a'), ('tenant', '=~', 't.*')]
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out, pos = [], 0
    while pos < len(body.rstrip()):
        m = _MATCHER.match(body, pos)
        if not m:
            raise MatchError(f'cannot parse label matcher at "{body[pos:]}" (expected e.g. {{model="llama"}})')
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        if m.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise MatchError(f"bad regular expression {value!r}: {exc}") from None
        out.append((m.group(1), m.group(2), value))
        pos = m.end()
    return out


def matches(labels: Mapping[str, str], matchers: Iterable[tuple[str, str, str]]) -> bool:
    """Whether a label set satisfies every matcher (regexes anchored, as in PromQL)."""
    for name, op, value in matchers:
        have = labels.get(name, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
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
        })
    return {"status": "success", "data": items}


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
    bands: Iterable[SeriesBand], values: Iterable[Series], start: float, end: float
) -> dict[str, Any]:
    """The `/api/v1/baselines/<alias>/series` document: per series its value, then its band."""
    by_key = {s.key: s for s in values}
    data: list[dict[str, Any]] = []
    for band in bands:
        series = by_key.get(band.key)
        if series is not None:
            data.append({"name": f"{format_labels(band.labels)} value", "type": "line",
                         "data": _points(series.timestamps, series.values, start, end)})
        data.extend(render_band_lines(band, start, end))
    return {"data": data}
