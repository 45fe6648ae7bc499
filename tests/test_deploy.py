"""The Kubernetes manifests in deploy/ agree with each other and with the product: the ConfigMap's
config loads as each pod would load it, the StatefulSet runs as many pods as there are shards, the
Dask address is the scheduler Service's, every container runs the same image, and promtool accepts
the scrape job."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartmetrics.config import parse_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


def documents(name: str) -> dict[tuple[str, str], dict]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def test_each_pod_loads_the_config_as_its_own_shard(monkeypatch) -> None:
    ours = documents("smartmetrics.yaml")
    statefulset = ours[("StatefulSet", "smartmetrics")]
    raw = yaml.safe_load(ours[("ConfigMap", "smartmetrics")]["data"]["config.yaml"])
    replicas = statefulset["spec"]["replicas"]
    for ordinal in range(replicas):
        monkeypatch.setenv("HOSTNAME", f"{statefulset['metadata']['name']}-{ordinal}")  # what Kubernetes sets
        config = parse_config(raw)
        assert (config.sharding.shard, config.sharding.shards) == (ordinal, replicas)
    assert statefulset["spec"]["serviceName"] == "smartmetrics"
    assert ours[("Service", "smartmetrics")]["spec"]["clusterIP"] == "None"
    mounts = {m["name"]: m["mountPath"] for m in containers(statefulset)[0]["volumeMounts"]}
    assert config.store.path.startswith(mounts["store"])  # the store lives on the pod's own volume
    port = int(config.server.listen.rsplit(":", 1)[1])
    assert containers(statefulset)[0]["ports"][0]["containerPort"] == port


def test_the_dask_address_is_the_scheduler_service_and_the_images_match(monkeypatch) -> None:
    monkeypatch.setenv("HOSTNAME", "smartmetrics-0")
    ours, dask = documents("smartmetrics.yaml"), documents("dask.yaml")
    config = parse_config(yaml.safe_load(ours[("ConfigMap", "smartmetrics")]["data"]["config.yaml"]))
    service = dask[("Service", "dask-scheduler")]
    assert config.cluster.dask == f"tcp://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    worker = containers(dask[("Deployment", "dask-worker")])[0]
    assert config.cluster.dask in worker["command"]
    images = {c["image"] for doc in [*ours.values(), *dask.values()] if "template" in doc.get("spec", {})
              for c in containers(doc)}
    assert len(images) == 1  # one smartmetrics version everywhere: the same bands wherever a fit runs


@pytest.mark.prometheus
def test_promtool_accepts_the_scrape_job(promtool, tmp_path: Path) -> None:
    (tmp_path / "prometheus.yml").write_text((DEPLOY / "prometheus-scrape.yaml").read_text())
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    job = yaml.safe_load((DEPLOY / "prometheus-scrape.yaml").read_text())["scrape_configs"][0]
    assert job["honor_labels"] is True
    ours = documents("smartmetrics.yaml")
    service = ours[("Service", "smartmetrics")]
    assert job["dns_sd_configs"][0]["names"][0].startswith(f"{service['metadata']['name']}.")
    assert job["dns_sd_configs"][0]["port"] == service["spec"]["ports"][0]["port"]


# --- KEDA: autoscaling on the forecast ahead (issue 25) -----------------------------------------

_STRING = {"type": "string"}
_NUMBER_TEXT = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_BOOL_TEXT = {"type": "string", "enum": ["true", "false"]}
SCALED_OBJECT_SCHEMA = {
    # from KEDA's documented ScaledObject spec and Prometheus scaler (keda.sh/docs/latest/concepts/
    # scaling-deployments, .../scalers/prometheus): trigger metadata is a map of strings
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": _STRING, "namespace": _STRING}},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                   "properties": {"name": _STRING, "kind": _STRING, "apiVersion": _STRING,
                                                  "envSourceContainerName": _STRING}},
                **{k: {"type": "integer", "minimum": 0} for k in (
                    "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                    "minReplicaCount", "maxReplicaCount")},
                "fallback": {"type": "object", "required": ["failureThreshold", "replicas"],
                             "properties": {"failureThreshold": {"type": "integer", "minimum": 1},
                                            "replicas": {"type": "integer", "minimum": 0}}},
                "advanced": {"type": "object"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "prometheus"},
                        "name": _STRING,
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "useCachedMetrics": {"type": "boolean"},
                        "authenticationRef": {"type": "object", "required": ["name"]},
                        "metadata": {
                            "type": "object",
                            "required": ["serverAddress", "query", "threshold"],
                            "additionalProperties": False,
                            "properties": {
                                "serverAddress": {"type": "string", "pattern": "^https?://"},
                                "query": _STRING, "threshold": _NUMBER_TEXT, "activationThreshold": _NUMBER_TEXT,
                                "queryParameters": _STRING, "namespace": _STRING, "customHeaders": _STRING,
                                "ignoreNullValues": _BOOL_TEXT, "unsafeSsl": _BOOL_TEXT,
                            },
                        },
                    },
                }},
            },
        },
    },
}


def selectors(node: object) -> list:
    """Every vector selector in a parsed PromQL expression."""
    import promql_parser

    if isinstance(node, promql_parser.VectorSelector):
        return [node]
    children = [getattr(node, a, None) for a in ("expr", "lhs", "rhs", "vector_selector", "param")]
    children += list(getattr(node, "args", None) or [])
    return [s for child in children if child is not None for s in selectors(child)]


def scaled_object() -> dict:
    return yaml.safe_load((DEPLOY / "keda-scaledobject.yaml").read_text())


def test_the_keda_scaled_object_follows_kedas_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(scaled_object())
    broken = scaled_object()
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 50  # KEDA reads strings only
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).validate(broken)


def test_the_keda_query_reads_an_ahead_series_the_deployed_config_exports(monkeypatch) -> None:
    import promql_parser

    from smartmetrics.adapters.exporter import AHEAD_METRICS, BAND_METRICS

    monkeypatch.setenv("HOSTNAME", "smartmetrics-0")
    config = parse_config(yaml.safe_load(documents("smartmetrics.yaml")[("ConfigMap", "smartmetrics")]["data"]
                                         ["config.yaml"]))
    [trigger] = scaled_object()["spec"]["triggers"]
    [selector] = selectors(promql_parser.parse(trigger["metadata"]["query"]))
    assert selector.name in {name for name, _ in (*AHEAD_METRICS, *BAND_METRICS)}
    assert selector.name == "smartmetrics_yhat_upper_ahead"
    matchers = {m.name: m.value for m in selector.matchers.matchers}
    baseline = config.baselines[matchers["baseline"]]
    assert matchers["ahead"] in baseline.ahead  # the offset is exported, spelled the same


def test_the_readme_shows_the_deployed_scaled_object() -> None:
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    section = readme.split("## Autoscaling on the forecast", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    assert scaled_object() in [yaml.safe_load(b) for b in blocks]
