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
