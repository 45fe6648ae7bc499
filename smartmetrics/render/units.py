"""The unit of a series, read from its metric name as Prometheus names them, for axes and panels.

Prometheus metric names end in their base unit (`_seconds`, `_bytes`, `_celsius`, `_ratio`, ...),
counters in `_total` and histograms in `_bucket`/`_sum`/`_count`; `rate()` of a counter is per
second. `parse_unit` reads that from a metric name, a PromQL expression, an alias or a file name,
and says nothing where they say nothing (an axis without a unit beats one with a wrong unit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smartmetrics.config import Baseline
from smartmetrics.engine.ranges import PERCENT, UNIT_INTERVAL


@dataclass(frozen=True)
class Unit:
    """How to label an axis: `label` for the axis title, `symbol` for an engineering-prefix tick
    formatter ("s" gives "250 ms"), `kind` one of `eng` | `fraction` | `percent` | `plain`, and the
    Grafana unit id a panel would use."""

    label: str
    symbol: str = ""
    kind: str = "eng"
    grafana: str = "short"


SECONDS = Unit("seconds", "s", "eng", "s")
BYTES = Unit("bytes", "B", "eng", "bytes")
FRACTION = Unit("ratio", "", "fraction", "percentunit")
PERCENTAGE = Unit("percent", "", "percent", "percent")
PER_SECOND = Unit("per second", "/s", "eng", "ops")
BASE_UNITS = {
    "seconds": SECONDS, "bytes": BYTES, "ratio": FRACTION, "percent": PERCENTAGE,
    "celsius": Unit("degrees Celsius", "°C", "eng", "celsius"), "volts": Unit("volts", "V", "eng", "volt"),
    "amperes": Unit("amperes", "A", "eng", "amp"), "joules": Unit("joules", "J", "eng", "joule"),
    "watts": Unit("watts", "W", "eng", "watt"), "meters": Unit("meters", "m", "eng", "lengthm"),
}
RATES = {"seconds": Unit("seconds per second", "s/s", "eng", "short"),
         "bytes": Unit("bytes per second", "B/s", "eng", "Bps")}
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_RATE = re.compile(r"\b(?:rate|irate)\s*\(")
_HISTOGRAM = re.compile(r"_(?:bucket|sum|count|created)$")


def _base_unit(name: str) -> str | None:
    """The base unit a metric name ends in, after `_total` and the histogram suffixes.

    >>> _base_unit("http_request_duration_seconds_bucket"), _base_unit("requests_total"), _base_unit("up")
    ('seconds', None, None)
    """
    stem = _HISTOGRAM.sub("", re.sub(r"_total$", "", name))
    return next((unit for unit in BASE_UNITS if stem.endswith(f"_{unit}") or stem == unit), None)


def parse_unit(text: str) -> Unit | None:
    """The unit of a series named or computed by `text` (metric name, PromQL, alias or file name).

    >>> parse_unit("histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))").label
    'seconds'
    >>> parse_unit("sum(rate(requests_total[5m]))").label, parse_unit("gpu_memory_bytes").label
    ('per second', 'bytes')
    >>> parse_unit("sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))").label
    'ratio'
    >>> parse_unit("queue_depth") is None
    True
    """
    text = str(text)
    names = [n for n in _NAME.findall(text) if "_" in n]
    rated = bool(_RATE.search(text))
    if "histogram_quantile" in text:
        units = [_base_unit(n) for n in names if n.endswith("_bucket")]
        return BASE_UNITS.get(units[0]) if units and units[0] else None
    if any(n.endswith("_sum") for n in names) and any(n.endswith("_count") for n in names) and "/" in text:
        unit = _base_unit(next(n for n in names if n.endswith("_sum")))  # a histogram's mean
        return BASE_UNITS.get(unit) if unit else None
    if "/" in text and rated and len(names) >= 2:
        return FRACTION  # a rate over a rate: errors per request, hits per lookup
    for name in names:
        unit = _base_unit(name)
        counter = name.endswith(("_total", "_count")) or (name.endswith("_sum") and unit is not None)
        if rated and counter:
            return RATES.get(unit or "", PER_SECOND)
        if unit is not None:
            return BASE_UNITS[unit]
    if PERCENT.search(text):
        return PERCENTAGE
    if UNIT_INTERVAL.search(text):
        return FRACTION
    return None


def parse_given_unit(text: str | None) -> Unit | None:
    """A unit a user named: a base unit (`seconds`, `bytes`, `ratio`, `percent`, ...), a metric name
    that says one, or any other text as a plain axis label.

    >>> parse_given_unit("seconds") == SECONDS, parse_given_unit("requests").label, parse_given_unit(None)
    (True, 'requests', None)
    """
    if not text:
        return None
    return BASE_UNITS.get(text) or parse_unit(text) or Unit(text, "", "plain")


PLAIN = "short"
"""Grafana's unit for plain numbers: what a panel gets when the names say nothing."""


def infer_unit(expr: str) -> str:
    """The Grafana unit id of what `expr` computes (`short` when its names say nothing).

    >>> infer_unit("histogram_quantile(0.99, sum by (le) (rate(http_duration_seconds_bucket[5m])))")
    's'
    >>> infer_unit("sum(rate(net_sent_bytes_total[5m]))"), infer_unit("sum(rate(requests_total[5m]))")
    ('Bps', 'ops')
    >>> infer_unit("gpu_memory_used_bytes / gpu_memory_total_bytes"), infer_unit("queue_depth")
    ('bytes', 'short')
    """
    unit = parse_unit(expr)
    return unit.grafana if unit is not None else PLAIN


def baseline_unit(baseline: Baseline) -> str:
    """The baseline's configured `unit`, else the one its expr's metric names imply."""
    return baseline.unit or infer_unit(baseline.expr)
