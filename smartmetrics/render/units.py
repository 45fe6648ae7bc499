"""The Grafana unit of a baseline's values: its `unit` if configured, else read from the metric names
of its `expr` by Prometheus' naming conventions (base units as suffixes: `_seconds`, `_bytes`,
`_ratio`, ...). A rate of a `_bytes_total` counter is bytes per second; a name without a unit
suffix, or an expr mixing units, gets Grafana's plain `short`.
"""

from __future__ import annotations

import re

from smartmetrics.config import Baseline

PLAIN = "short"
SUFFIX_UNITS = {
    "seconds": "s", "milliseconds": "ms", "microseconds": "µs", "bytes": "bytes", "ratio": "percentunit",
    "percent": "percent", "celsius": "celsius", "volts": "volt", "amperes": "amp", "joules": "joule",
    "watts": "watt", "meters": "lengthm", "hertz": "hertz",
}
PER_SECOND = {"bytes": "Bps"}  # the rate of a counter of this unit; others have no Grafana unit that fits
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_METRIC_UNIT = re.compile(r"_(" + "|".join(SUFFIX_UNITS) + r")(_total|_bucket|_sum)?$")
_RATE = re.compile(r"\b(rate|irate|increase|deriv)\s*\(")


def infer_unit(expr: str) -> str:
    """The unit the metric names of `expr` share (`short` when none or several).

    >>> infer_unit("histogram_quantile(0.99, sum by (le) (rate(http_duration_seconds_bucket[5m])))")
    's'
    >>> infer_unit("sum(rate(net_sent_bytes_total[5m]))"), infer_unit("sum(rate(requests_total[5m]))")
    ('Bps', 'short')
    >>> infer_unit("gpu_memory_used_bytes / gpu_memory_total_bytes")
    'bytes'
    """
    units = set()
    for name in _NAME.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):  # not inside label values
        match = _METRIC_UNIT.search(name)
        if match is None:
            continue
        base, kind = match.group(1), match.group(2)
        if kind == "_total":  # a counter: only its rate has a unit here
            units.add(PER_SECOND.get(base, PLAIN) if _RATE.search(expr) else PLAIN)
        else:
            units.add(SUFFIX_UNITS[base])
    return units.pop() if len(units) == 1 else PLAIN


def baseline_unit(baseline: Baseline) -> str:
    """The baseline's configured `unit`, else the one its expr's metric names imply."""
    return baseline.unit or infer_unit(baseline.expr)
