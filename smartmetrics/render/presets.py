"""Presets of `smartmetrics init` for well-known exporters: the few baselines worth having from each,
proposed where their metric names are present, instead of one per metric.

smartmetrics.instrument (inference services), node_exporter, kube-state-metrics, cAdvisor and the
NVIDIA DCGM exporter. An exporter's other metrics are left out (`covered`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smartmetrics.instrument import CONFIDENCE, DURATION, IN_FLIGHT, REQUESTS
from smartmetrics.render.promql_build import agg, error_ratio, present, quantile, rate
from smartmetrics.render.proposals import Candidate, Proposal

Build = Callable[[tuple[str, ...], set[str]], str]
"""(grouping labels present, every label of the sample) -> expr."""


@dataclass(frozen=True)
class Preset:
    exporter: str
    alias: str
    needs: tuple[str, ...]
    """Metric names that must all be present; the first is sampled for labels."""
    by: tuple[str, ...]
    """Grouping labels, in order, kept where the sample has them (the first of `one_of` pairs only)."""
    expr: Build
    why: str
    score: int
    direction: str = "both"
    range: tuple[float, float] | None = None
    one_of: tuple[tuple[str, ...], ...] = ()
    """Alternatives of which only the first present is kept, e.g. (Hostname, instance)."""


def _by_present(preset: Preset, samples: Sequence[dict[str, str]]) -> tuple[str, ...]:
    found = present(samples, preset.by)
    for group in preset.one_of:
        chosen = [label for label in group if label in found][:1]
        found = tuple(label for label in found if label not in group or label in chosen)
    return found


def _container(labels: set[str]) -> str:
    return 'container!=""' if "container" in labels else ""


INSTRUMENT = (
    Preset("smartmetrics.instrument", "inference_error_ratio", (REQUESTS,), ("model_name", "tenant_id"),
           lambda by, _: error_ratio(REQUESTS, REQUESTS, by, 'outcome="error"'),
           "share of inference requests that failed", 110, "up", (0.0, 1.0)),
    Preset("smartmetrics.instrument", "inference_latency_p95", (f"{DURATION}_bucket",), ("model_name", "tenant_id"),
           lambda by, _: quantile(0.95, f"{DURATION}_bucket", by), "p95 inference latency", 105, "up"),
    Preset("smartmetrics.instrument", "inference_latency_p99", (f"{DURATION}_bucket",), ("model_name", "tenant_id"),
           lambda by, _: quantile(0.99, f"{DURATION}_bucket", by), "p99 inference latency (the tail)", 103, "up"),
    Preset("smartmetrics.instrument", "inference_qps", (REQUESTS,), ("model_name", "tenant_id"),
           lambda by, _: agg("sum", by, rate(REQUESTS)), "inference requests per second", 100),
    Preset("smartmetrics.instrument", "inference_confidence_median", (f"{CONFIDENCE}_bucket",),
           ("model_name", "tenant_id"), lambda by, _: quantile(0.5, f"{CONFIDENCE}_bucket", by),
           "median prediction confidence (a drop: drift or bad inputs)", 95, "down", (0.0, 1.0)),
    Preset("smartmetrics.instrument", "inference_in_flight", (IN_FLIGHT,), ("model_name", "tenant_id"),
           lambda by, _: agg("sum", by, IN_FLIGHT), "inference requests in flight (saturation)", 70),
)
NODE = (
    Preset("node_exporter", "node_cpu_utilisation", ("node_cpu_seconds_total",), ("instance",),
           lambda by, _: "1 - " + agg("avg", by, rate("node_cpu_seconds_total", 'mode="idle"')),
           "share of CPU time not idle, per node", 75, range=(0.0, 1.0)),
    Preset("node_exporter", "node_memory_utilisation", ("node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"),
           ("instance",), lambda by, _: f"1 - {agg('sum', by, 'node_memory_MemAvailable_bytes')} / "
                                        f"{agg('sum', by, 'node_memory_MemTotal_bytes')}",
           "share of memory in use, per node", 72, range=(0.0, 1.0)),
    Preset("node_exporter", "node_network_receive_rate", ("node_network_receive_bytes_total",), ("instance",),
           lambda by, _: agg("sum", by, rate("node_network_receive_bytes_total", 'device!="lo"')),
           "bytes received per second, per node", 50),
)
KUBE = (
    Preset("kube-state-metrics", "kube_container_restarts", ("kube_pod_container_status_restarts_total",),
           ("namespace",), lambda by, _: agg("sum", by, rate("kube_pod_container_status_restarts_total")),
           "container restarts per second, per namespace", 65, "up"),
    Preset("kube-state-metrics", "kube_unavailable_replicas", ("kube_deployment_status_replicas_unavailable",),
           ("namespace", "deployment"), lambda by, _: agg("sum", by, "kube_deployment_status_replicas_unavailable"),
           "unavailable replicas per deployment", 60, "up"),
    Preset("kube-state-metrics", "kube_pods_pending", ("kube_pod_status_phase",), ("namespace",),
           lambda by, _: agg("sum", by, 'kube_pod_status_phase{phase="Pending"}'), "pending pods per namespace", 55,
           "up"),
)
CADVISOR = (
    Preset("cAdvisor", "container_cpu_usage", ("container_cpu_usage_seconds_total",), ("namespace", "container", "name"),
           lambda by, labels: agg("sum", by, rate("container_cpu_usage_seconds_total", _container(labels))),
           "CPU seconds per second, per container", 60, one_of=(("container", "name"),)),
    Preset("cAdvisor", "container_memory_working_set", ("container_memory_working_set_bytes",),
           ("namespace", "container", "name"),
           lambda by, labels: agg("sum", by, f"container_memory_working_set_bytes{{{_container(labels)}}}"
                                  if _container(labels) else "container_memory_working_set_bytes"),
           "working-set memory, per container", 58, one_of=(("container", "name"),)),
)
DCGM = (
    Preset("NVIDIA DCGM exporter", "gpu_utilisation", ("DCGM_FI_DEV_GPU_UTIL",), ("Hostname", "instance", "gpu"),
           lambda by, _: agg("avg", by, "DCGM_FI_DEV_GPU_UTIL"), "GPU utilisation (percent), per GPU", 80,
           range=(0.0, 100.0), one_of=(("Hostname", "instance"),)),
    Preset("NVIDIA DCGM exporter", "gpu_memory_copy_utilisation", ("DCGM_FI_DEV_MEM_COPY_UTIL",),
           ("Hostname", "instance", "gpu"), lambda by, _: agg("avg", by, "DCGM_FI_DEV_MEM_COPY_UTIL"),
           "GPU memory bandwidth utilisation (percent), per GPU", 62, range=(0.0, 100.0),
           one_of=(("Hostname", "instance"),)),
    Preset("NVIDIA DCGM exporter", "gpu_framebuffer_used", ("DCGM_FI_DEV_FB_USED",), ("Hostname", "instance", "gpu"),
           lambda by, _: agg("avg", by, "DCGM_FI_DEV_FB_USED"), "GPU framebuffer memory used (MiB), per GPU", 58,
           one_of=(("Hostname", "instance"),)),
)
PRESETS = (*INSTRUMENT, *NODE, *KUBE, *CADVISOR, *DCGM)
INSTRUMENT_NAMES = {REQUESTS, IN_FLIGHT} | {f"{m}_{s}" for m in (DURATION, CONFIDENCE) for s in ("bucket", "sum", "count")}
PREFIXES = {"node_exporter": "node_", "kube-state-metrics": "kube_", "cAdvisor": "container_",
            "NVIDIA DCGM exporter": "DCGM_"}


def covered(name: str) -> bool:
    """Whether `name` belongs to an exporter with a preset (its other metrics are not proposed)."""
    return name in INSTRUMENT_NAMES or name.startswith(tuple(PREFIXES.values()))


def _candidate(preset: Preset) -> Candidate:
    def build(samples: Sequence[dict[str, str]]) -> Proposal:
        by = _by_present(preset, samples)
        labels = {k for s in samples for k in s}
        groups = f"by {', '.join(by)}" if by else "overall"
        return Proposal(preset.alias, preset.expr(by, labels), f"{preset.why} ({preset.exporter} preset, {groups})",
                        preset.score, preset.direction, preset.range)
    return Candidate(preset.score, preset.alias, preset.needs[0], build)


def preset_candidates(names: Sequence[str]) -> list[Candidate]:
    """The presets whose metrics are all present, best first."""
    have = set(names)
    found = [_candidate(p) for p in PRESETS if all(n in have for n in p.needs)]
    return sorted(found, key=lambda c: (-c.score, c.alias))
