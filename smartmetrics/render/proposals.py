"""What is worth a baseline among a Prometheus' metrics, for `smartmetrics init`: pure functions from
metric names, metadata and label samples to ranked candidate baselines.

A metric's type comes from the metadata when the source has it (scraped targets), else from the
naming conventions (`_total` counter, `_bucket` histogram, `_sum`+`_count` summary, the rest gauges).
Exporter internals, info metrics, timestamps and recording rules are left out with a reason; the
metrics of well-known exporters are covered by their presets (`smartmetrics.render.presets`) only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from smartmetrics.render.promql import quote
from smartmetrics.render.promql_build import agg, choose_by, error_ratio, label_values, quantile, rate

Samples = Callable[[str], Sequence[dict[str, str]]]
"""A metric name -> a sample of its series' label sets (I/O, injected)."""


@dataclass(frozen=True)
class Proposal:
    """A baseline to write: alias, expr, why, and the alert direction and value range that suit it."""

    alias: str
    expr: str
    why: str
    score: int
    direction: str = "both"
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Candidate:
    """A baseline that may be proposed once `build` has seen a sample of `metric`'s series."""

    score: int
    alias: str
    metric: str
    build: Callable[[Sequence[dict[str, str]]], Proposal | None] = field(compare=False)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


INTERNAL_PREFIXES = ("go_", "process_", "promhttp_", "scrape_", "prometheus_", "net_conntrack_", "smartmetrics_",
                     "alertmanager_", "grafana_")
ERROR_NAME = re.compile(r"^(?P<base>.+?)_(errors?|failures?|failed)(_total)?$")
REQUEST_LIKE = re.compile(r"request|rpc|call|quer|inference|message|event|job|task|http|grpc|operation", re.I)
LATENCY_LIKE = re.compile(r"(_seconds|_duration|latency|_time_ms|_milliseconds)$|duration|latency", re.I)
SATURATION_LIKE = re.compile(r"util|saturation|queue|in_flight|inflight|pending|backlog|depth|load|pressure|"
                             r"usage|used|lag|temperature|connections|active", re.I)
MEAN_LIKE = re.compile(r"util|ratio|percent|usage|temperature|fraction|pressure|load", re.I)
ERROR_VALUES = ("error", "errors", "failure", "failed", "fail", "exception")


def skip_reason(name: str, kind: str | None = None) -> str | None:
    """Why metric `name` is never a baseline of its own, or None.

    >>> skip_reason("go_goroutines"), skip_reason("app_build_info"), skip_reason("http_requests_total")
    ('exporter internals', 'info metric (constant 1 carrying labels)', None)
    """
    if name.startswith(INTERNAL_PREFIXES) or name in ("up", "ALERTS", "ALERTS_FOR_STATE"):
        return "exporter internals"
    if name.endswith("_info") or kind in ("info", "stateset"):
        return "info metric (constant 1 carrying labels)"
    if ":" in name:
        return "recording rule output (its source metrics are proposed instead)"
    if name.endswith(("_created", "_timestamp", "_timestamp_seconds", "_time_seconds")) or "timestamp" in name:
        return "a timestamp"
    return None


def metric_kind(name: str, metadata: Mapping[str, str]) -> str:
    """counter, gauge, histogram or summary, from the metadata or else the name.

    >>> metric_kind("x_total", {}), metric_kind("x", {"x": "counter"}), metric_kind("x_total", {"x": "gauge"})
    ('counter', 'counter', 'counter')
    """
    kind = metadata.get(name) or metadata.get(name.removesuffix("_total"))
    if kind in ("counter", "gauge"):
        return "counter" if name.endswith("_total") else kind
    return "counter" if name.endswith("_total") else "gauge"


def alias_of(name: str, suffix: str = "") -> str:
    """A baseline alias from a metric name: lower case, `_total` dropped.

    >>> alias_of("http_requests_total", "_rate"), alias_of("DCGM_FI_DEV_FB_USED")
    ('http_requests_rate', 'dcgm_fi_dev_fb_used')
    """
    return re.sub(r"[^a-z0-9_]", "_", name.lower().removesuffix("_total")) + suffix


def _groups(by: Sequence[str]) -> str:
    return f"by {', '.join(by)}" if by else "overall"


def error_matcher(samples: Sequence[dict[str, str]]) -> str | None:
    """The matcher selecting a request counter's failed requests, from its label values: `code=~"5.."`
    for HTTP-style codes, `outcome="error"` (or the like) for outcome labels; None when there is none.

    >>> error_matcher([{"code": "200"}, {"code": "503"}]), error_matcher([{"outcome": "ok"}, {"outcome": "error"}])
    ('code=~"5.."', 'outcome="error"')
    """
    values = label_values(samples)
    for label in ("code", "status_code", "status", "response_code"):
        if any(re.fullmatch(r"5\d\d", v) for v in values.get(label, ())):
            return f'{label}=~"5.."'
    for label in ("outcome", "status", "result"):
        found = sorted(v for v in values.get(label, ()) if v.lower() in ERROR_VALUES)
        if found:
            return f"{label}={quote(found[0])}"
    return None


def _counter_candidates(name: str, names: set[str]) -> list[Candidate]:
    """A request-like counter: its rate, and its error ratio (from a sibling errors counter or an
    outcome/code label); an errors counter with a requests sibling: only the ratio."""
    base = name.removesuffix("_total")
    found = ERROR_NAME.match(base)
    if found:
        requests = next((f"{found['base']}{s}" for s in ("_requests_total", "_total", "_calls_total")
                         if f"{found['base']}{s}" in names), None)
        if requests is not None:
            def build_pair(samples: Sequence[dict[str, str]]) -> Proposal:
                by = choose_by(samples)
                return Proposal(alias_of(found["base"], "_error_ratio"), error_ratio(name, requests, by),
                                f"errors per request ({name} / {requests}), {_groups(by)}", 90, "up", (0.0, 1.0))
            return [Candidate(90, alias_of(found["base"], "_error_ratio"), name, build_pair)]
    request_like = bool(REQUEST_LIKE.search(name))
    score = 80 if request_like else 40

    def build_rate(samples: Sequence[dict[str, str]]) -> Proposal:
        by = choose_by(samples)
        direction = "up" if found else "both"
        return Proposal(alias_of(name, "_rate"), agg("sum", by, rate(name)), f"per-second rate of counter {name}, "
                        f"{_groups(by)}", score, direction)

    def build_ratio(samples: Sequence[dict[str, str]]) -> Proposal | None:
        matcher = error_matcher(samples)
        if matcher is None:
            return None
        by = choose_by(samples)
        return Proposal(alias_of(name, "_error_ratio"), error_ratio(name, name, by, matcher),
                        f"share of {name} with {matcher}, {_groups(by)}", 90, "up", (0.0, 1.0))

    out = [Candidate(score, alias_of(name, "_rate"), name, build_rate)]
    if request_like:
        out.append(Candidate(90, alias_of(name, "_error_ratio"), name, build_ratio))
    return out


def _histogram_candidates(base: str) -> list[Candidate]:
    """The p95 of a histogram; for a latency histogram the p99 (its tail) beside it."""
    latency = bool(LATENCY_LIKE.search(base))
    score = 85 if latency else 55

    def quantile_candidate(q: float, score: int) -> Candidate:
        alias = alias_of(base, f"_p{q * 100:g}")

        def build(samples: Sequence[dict[str, str]]) -> Proposal:
            by = choose_by(samples)
            return Proposal(alias, quantile(q, f"{base}_bucket", by), f"p{q * 100:g} of histogram {base}, "
                            f"{_groups(by)}", score, "up" if latency else "both")
        return Candidate(score, alias, f"{base}_bucket", build)
    return [quantile_candidate(0.95, score), *([quantile_candidate(0.99, score - 2)] if latency else [])]


def _summary_candidate(base: str) -> Candidate:
    latency = bool(LATENCY_LIKE.search(base))
    score = 80 if latency else 50

    def build(samples: Sequence[dict[str, str]]) -> Proposal:
        by = choose_by(samples)
        expr = f"{agg('sum', by, rate(f'{base}_sum'))} / {agg('sum', by, rate(f'{base}_count'))}"
        return Proposal(alias_of(base, "_mean"), expr, f"mean of summary {base}, {_groups(by)}", score,
                        "up" if latency else "both")
    return Candidate(score, alias_of(base, "_mean"), f"{base}_count", build)


def _gauge_candidate(name: str) -> Candidate:
    saturation = bool(SATURATION_LIKE.search(name))
    score = 60 if saturation else 30
    bounds = (0.0, 1.0) if name.endswith("_ratio") else (0.0, 100.0) if "percent" in name.lower() else None

    def build(samples: Sequence[dict[str, str]]) -> Proposal:
        by = choose_by(samples)
        op = "avg" if MEAN_LIKE.search(name) else "sum"
        what = "saturation gauge" if saturation else "gauge"
        return Proposal(alias_of(name), agg(op, by, name), f"{what} {name} ({op}), {_groups(by)}", score,
                        range=bounds)
    return Candidate(score, alias_of(name), name, build)


def plan_candidates(names: Sequence[str], metadata: Mapping[str, str],
                    covered: Callable[[str], bool] = lambda name: False) -> tuple[list[Candidate], list[Skipped]]:
    """Generic candidates for every metric not `covered` by a preset, best first, and the metrics
    left out with why."""
    present = set(names)
    buckets = {n.removesuffix("_bucket") for n in names if n.endswith("_bucket")}
    summaries = {n.removesuffix("_count") for n in names
                 if n.endswith("_count") and f"{n.removesuffix('_count')}_sum" in present} - buckets
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for name in sorted(present):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        reason = skip_reason(name, metadata.get(base))
        if reason is None and covered(name):
            continue
        if reason is not None:
            skipped.append(Skipped(name, reason))
        elif base in buckets:
            if name.endswith("_bucket"):
                candidates += _histogram_candidates(base)
        elif base in summaries and name != base:
            if name.endswith("_count"):
                candidates.append(_summary_candidate(base))
        elif base in summaries or metadata.get(name) == "summary":
            skipped.append(Skipped(name, "summary quantiles (its _sum / _count mean is proposed)"))
        elif metric_kind(name, metadata) == "counter":
            candidates += _counter_candidates(name, present)
        else:
            candidates.append(_gauge_candidate(name))
    candidates.sort(key=lambda c: (-c.score, c.alias))
    return candidates, skipped
