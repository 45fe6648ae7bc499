"""The pure side of `smartmetrics init`: which metrics become which baselines, from names, metadata and
label samples (the real Prometheus side is tests/app/test_init.py)."""

from __future__ import annotations

import pytest

from smartmetrics.engine.promql_syntax import promql_error
from smartmetrics.render.presets import PRESETS, covered, preset_candidates
from smartmetrics.render.promql import expr_label_names
from smartmetrics.render.promql_build import choose_by
from smartmetrics.render.proposals import plan_candidates

SAMPLE_LABELS = {
    "node_exporter": [{"instance": "n1:9100", "job": "node", "cpu": "0", "mode": "idle", "device": "eth0"}],
    "kube-state-metrics": [{"namespace": "serving", "deployment": "api", "pod": "api-1", "phase": "Pending"}],
    "cAdvisor": [{"namespace": "serving", "container": "api", "pod": "api-1", "id": "/kubepods/x"}],
    "NVIDIA DCGM exporter": [{"gpu": "0", "Hostname": "gpu-1", "instance": "dcgm:9400", "UUID": "GPU-1"}],
    "smartmetrics.instrument": [{"model_name": "m", "tenant_id": "t", "model_version": "v", "framework": "x",
                                 "outcome": "ok"}],
}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.alias)
def test_every_preset_builds_valid_promql_from_its_own_metrics(preset) -> None:
    candidates = preset_candidates(list(preset.needs))
    candidate = next(c for c in candidates if c.alias == preset.alias)
    proposal = candidate.build(SAMPLE_LABELS[preset.exporter])
    assert promql_error(proposal.expr) is None, proposal.expr
    assert all(name in proposal.expr for name in preset.needs)
    assert all(covered(name) for name in preset.needs)
    assert not {"pod", "UUID", "id"} & set(expr_label_names(proposal.expr) or ())


def test_presets_only_where_all_their_metrics_are_present() -> None:
    assert [c.alias for c in preset_candidates(["node_memory_MemTotal_bytes"])] == []
    found = preset_candidates(["DCGM_FI_DEV_GPU_UTIL", "node_cpu_seconds_total", "go_goroutines"])
    assert [c.alias for c in found] == ["gpu_utilisation", "node_cpu_utilisation"]
    dcgm = found[0].build(SAMPLE_LABELS["NVIDIA DCGM exporter"])
    assert dcgm.expr == "avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)"  # Hostname preferred to instance


def test_cadvisor_without_container_label_groups_by_name() -> None:
    candidate = preset_candidates(["container_memory_working_set_bytes"])[0]
    proposal = candidate.build([{"name": "web", "id": "/docker/abc"}])
    assert proposal.expr == "sum by (name) (container_memory_working_set_bytes)"


def test_types_from_metadata_names_pairs_and_summaries() -> None:
    names = ["api_errors_total", "api_requests_total", "rpc_latency_seconds_sum", "rpc_latency_seconds_count",
             "rpc_latency_seconds", "temperature", "workers_busy", "app_start_time_seconds", "job:x:rate5m",
             "node_load1"]
    metadata = {"workers_busy": "gauge", "rpc_latency_seconds": "summary"}
    candidates, skipped = plan_candidates(names, metadata, covered)
    aliases = [c.alias for c in candidates]
    assert aliases == ["api_error_ratio", "api_requests_error_ratio", "api_requests_rate", "rpc_latency_seconds_mean",
                       "temperature", "workers_busy"]
    reasons = {s.name: s.reason for s in skipped}
    assert reasons["app_start_time_seconds"] == "a timestamp"
    assert reasons["job:x:rate5m"].startswith("recording rule")
    assert reasons["rpc_latency_seconds"].startswith("summary quantiles")
    assert "node_load1" not in reasons and "node_load1" not in aliases  # a preset's exporter: presets only
    pair = candidates[0].build([{"service": "a", "instance": "1"}, {"service": "b", "instance": "2"}])
    assert pair.expr == ("(sum by (service) (rate(api_errors_total[5m])) or sum by (service) "
                         "(rate(api_requests_total[5m])) * 0) / sum by (service) (rate(api_requests_total[5m]))")
    assert (pair.direction, pair.range) == ("up", (0.0, 1.0))
    assert candidates[1].build([{"service": "a"}]) is None  # no code or outcome label: no ratio of its own
    mean = candidates[3].build([{"handler": "/a"}, {"handler": "/b"}])
    assert mean.expr == ("sum by (handler) (rate(rpc_latency_seconds_sum[5m])) / "
                         "sum by (handler) (rate(rpc_latency_seconds_count[5m]))")
    assert mean.direction == "up"


def test_grouping_labels_from_cardinality() -> None:
    pods = [{"pod": f"api-{i}", "namespace": "serving", "route": f"/r{i % 3}", "user_id": str(i)} for i in range(50)]
    assert choose_by(pods) == ("namespace", "route")  # pod dropped (others exist), user_id too many values
    assert choose_by([{"pod": f"p{i}"} for i in range(3)]) == ("pod",)  # all there is, and few
    assert choose_by([{"pod": f"p{i}"} for i in range(30)]) == ()


def test_latency_histograms_get_p99_beside_p95() -> None:
    names = ["rpc_duration_seconds_bucket", "rpc_duration_seconds_sum", "rpc_duration_seconds_count",
             "batch_size_bucket", "batch_size_sum", "batch_size_count"]
    candidates, _ = plan_candidates(names, {}, covered)
    assert [c.alias for c in candidates] == ["rpc_duration_seconds_p95", "rpc_duration_seconds_p99", "batch_size_p95"]
    samples = [{"service": "a"}, {"service": "b"}]
    p95, p99 = (c.build(samples) for c in candidates[:2])
    assert p99.expr == "histogram_quantile(0.99, sum by (service, le) (rate(rpc_duration_seconds_bucket[5m])))"
    assert p99.expr == p95.expr.replace("0.95", "0.99")
    assert (p99.direction, p99.range) == ("up", None) and "p99" in p99.why


def test_the_instrument_latency_gets_p99_beside_p95() -> None:
    found = [c.alias for c in preset_candidates(["inference_requests_total", "inference_request_duration_seconds_bucket"])]
    assert found == ["inference_error_ratio", "inference_latency_p95", "inference_latency_p99", "inference_qps"]
    p99 = preset_candidates(["inference_request_duration_seconds_bucket"])[1].build(
        SAMPLE_LABELS["smartmetrics.instrument"])
    assert p99.expr == ("histogram_quantile(0.99, sum by (model_name, tenant_id, le) "
                        "(rate(inference_request_duration_seconds_bucket[5m])))")
    assert p99.direction == "up"
