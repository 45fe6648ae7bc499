"""Small PromQL builders for the exprs `smartmetrics init` proposes, and the grouping labels chosen
from a sample of a metric's series (keep service-, model- and tenant-like labels, drop pod- and
instance-like ones unless they are all there is and few)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

RATE_WINDOW = "5m"
MAX_VALUES = 30
"""A label with more values than this in the sample is not grouped by (it would split too finely)."""
FEW_INSTANCES = 10
MAX_GROUPS = 200

NEVER_GROUPED = {"le", "quantile", "code", "status", "status_code", "outcome", "result"}
"""Bucket bounds, quantiles and outcomes: aggregated over (outcomes become error ratios instead)."""
INSTANCE_LIKE = re.compile(
    r"^(instance|pod|pod_name|kubernetes_pod_name|node|host|hostname|container_id|id|uid|uuid|ip|address|pid)$",
    re.IGNORECASE)
IDENTITY_LIKE = re.compile(r"service|model|tenant|app|namespace|deployment|route|handler|queue|topic|gpu|device",
                           re.IGNORECASE)
"""Labels that name what a series is about: kept even when the sample shows a single value."""


def agg(op: str, by: Sequence[str], inner: str) -> str:
    """`op by (a, b) (inner)`, or `op(inner)` without labels.

    >>> agg("sum", ["model"], "rate(x[5m])"), agg("avg", [], "g")
    ('sum by (model) (rate(x[5m]))', 'avg(g)')
    """
    return f"{op} by ({', '.join(by)}) ({inner})" if by else f"{op}({inner})"


def rate(metric: str, matcher: str = "") -> str:
    """`rate(metric{matcher}[5m])`."""
    return f"rate({metric}{{{matcher}}}[{RATE_WINDOW}])" if matcher else f"rate({metric}[{RATE_WINDOW}])"


def error_ratio(errors: str, requests: str, by: Sequence[str], matcher: str = "") -> str:
    """Errors per request by `by`: 0 (not nothing) where there were requests and no errors.

    >>> error_ratio("x_total", "x_total", ["svc"], 'code=~"5.."')
    '(sum by (svc) (rate(x_total{code=~"5.."}[5m])) or sum by (svc) (rate(x_total[5m])) * 0) / sum by (svc) (rate(x_total[5m]))'
    """
    total = agg("sum", by, rate(requests))
    return f"({agg('sum', by, rate(errors, matcher))} or {total} * 0) / {total}"


def quantile(q: float, bucket: str, by: Sequence[str]) -> str:
    """The q-quantile of a classic histogram by `by`.

    >>> quantile(0.95, "lat_bucket", ["model"])
    'histogram_quantile(0.95, sum by (model, le) (rate(lat_bucket[5m])))'
    """
    return f"histogram_quantile({q:g}, {agg('sum', [*by, 'le'], rate(bucket))})"


def label_values(samples: Iterable[dict[str, str]]) -> dict[str, set[str]]:
    """Each label's distinct values in a sample of series."""
    values: dict[str, set[str]] = {}
    for labels in samples:
        for key, value in labels.items():
            values.setdefault(key, set()).add(value)
    return values


def choose_by(samples: Sequence[dict[str, str]], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """Grouping labels for a metric from a sample of its series, sorted.

    >>> choose_by([{"service": "a", "instance": "1", "job": "x"}, {"service": "a", "instance": "2", "job": "x"}])
    ('service',)
    >>> choose_by([{"instance": "n1", "cpu": "0"}, {"instance": "n1", "cpu": "1"}], exclude=["cpu"])
    ('instance',)
    """
    values = label_values(samples)
    skip = NEVER_GROUPED | set(exclude)
    kept, instances = [], []
    for label in sorted(values):
        count = len(values[label])
        if label in skip or label.startswith("__"):
            continue
        if INSTANCE_LIKE.match(label):
            instances.append((label, count))
        elif count <= MAX_VALUES and (count > 1 or IDENTITY_LIKE.search(label)):
            kept.append(label)
    if not kept:
        kept = [label for label, count in instances if count <= FEW_INSTANCES]
    while kept and len({tuple(s.get(k, "") for k in kept) for s in samples}) > MAX_GROUPS:
        kept.remove(max(kept, key=lambda k: len(values[k])))
    return tuple(kept)


def present(samples: Sequence[dict[str, str]], wanted: Sequence[str]) -> tuple[str, ...]:
    """The labels of `wanted` that the sample has, in `wanted`'s order."""
    seen = label_values(samples)
    return tuple(label for label in wanted if label in seen)
