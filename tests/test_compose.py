"""deploy/compose.yaml, for users with Docker (not available here): its structure, and that every
local file it mounts exists in the repository or is written by a command its header documents
(run here as written, into a temporary copy of deploy/), and that the parts agree with each other."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from smartmetrics.app.cli import main
from smartmetrics.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def documented_commands() -> list[list[str]]:
    """The `smartmetrics ...` commands of the compose file's header, as argument lists."""
    lines = [m.group(1) for m in re.finditer(r"^#\s+(?:\.venv/bin/)?(smartmetrics \S.*)$", COMPOSE.read_text(), re.M)]
    return [shlex.split(line)[1:] for line in lines]


def mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the documented commands write, under `<tmp>/deploy/`."""
    root = tmp_path_factory.mktemp("compose")
    for args in documented_commands():
        out = args.index("--out") + 1
        assert args[out].startswith("deploy/generated/"), args
        args[out] = str(root / args[out])
        args[args.index("--config") + 1] = str(ROOT / args[args.index("--config") + 1])
        assert main(args) == 0, args
    return root / "deploy"


def test_three_services_on_pinned_images_with_their_ports() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"prometheus", "smartmetrics", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        assert all(re.match(r"^\d+:\d+$", p) for p in service["ports"]), name
    assert services["smartmetrics"]["build"]["dockerfile"] == "Dockerfile"
    assert (DEPLOY / services["smartmetrics"]["build"]["context"] / "Dockerfile").is_file()
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert named == set(doc["volumes"])  # every named volume is declared


def test_every_mounted_file_exists_or_is_written_by_a_documented_command(generated: Path) -> None:
    commands = documented_commands()
    assert {args[0] for args in commands} == {"rules", "grafana"}
    readme = (ROOT / "README.md").read_text()
    for args in documented_commands():
        assert " ".join(["smartmetrics", *args]) in readme  # the README shows the same commands
    for name, service in compose()["services"].items():
        for source, target in mounts(service):
            here = (DEPLOY / source).resolve()
            made = generated / Path(source).relative_to(".") if source.startswith("./generated/") else None
            assert here.exists() or (made is not None and made.exists()), (name, source)


def test_the_parts_agree(generated: Path) -> None:
    services = compose()["services"]
    smartmetrics = dict(mounts(services["smartmetrics"]))
    config_file = next(s for s, t in smartmetrics.items() if t == "/etc/smartmetrics/config.yaml")
    config = parse_config(yaml.safe_load((DEPLOY / config_file).read_text()))
    assert config.sources[next(iter(config.sources))].url == "http://prometheus:9090"
    port = config.server.listen.rsplit(":", 1)[1]
    assert f"{port}:{port}" in services["smartmetrics"]["ports"]
    assert config.store.path.startswith("/var/lib/smartmetrics")  # on the store volume

    prometheus = {t: s for s, t in mounts(services["prometheus"])}
    prom_config = yaml.safe_load((DEPLOY / prometheus["/etc/prometheus/prometheus.yml"]).read_text())
    job = next(j for j in prom_config["scrape_configs"] if j["job_name"] == "smartmetrics")
    assert job["honor_labels"] is True and job["static_configs"][0]["targets"] == [f"smartmetrics:{port}"]
    rules_dir = next(t for s, t in mounts(services["prometheus"]) if s == "./generated/rules")
    for pattern in prom_config["rule_files"]:
        assert pattern.startswith(rules_dir + "/")
        assert list((generated / "generated" / "rules").glob(Path(pattern).name)), pattern

    grafana = {t: s for s, t in mounts(services["grafana"])}
    datasources = yaml.safe_load((DEPLOY / grafana["/etc/grafana/provisioning/datasources/smartmetrics.yaml"])
                                 .read_text())
    source = datasources["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uid = next(args[args.index("--datasource-uid") + 1] for args in documented_commands() if args[0] == "grafana")
    assert source["uid"] == uid
    dashboards = grafana["/etc/grafana/provisioning/dashboards"]
    provider = yaml.safe_load((generated / Path(dashboards).relative_to(".") / "smartmetrics.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    assert list((generated / Path(dashboards).relative_to(".")).glob("*.json"))


@pytest.mark.prometheus
def test_promtool_accepts_the_prometheus_config_and_the_rules(promtool, generated: Path, tmp_path: Path) -> None:
    prometheus = {t: s for s, t in mounts(compose()["services"]["prometheus"])}
    text = (DEPLOY / prometheus["/etc/prometheus/prometheus.yml"]).read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/rules/", f"{generated}/generated/rules/"))
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
