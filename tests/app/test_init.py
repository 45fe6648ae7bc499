"""`smartmetrics init`: baselines proposed from what a real Prometheus holds, written as a config that
loads, whose every expr returns series, and that leaves exporter internals and constants alone."""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import numpy as np
import pytest
from rich.console import Console

from smartmetrics.adapters.store import load_store
from smartmetrics.app.cli import main
from smartmetrics.app.demo_data import _histogram
from smartmetrics.app.init import MIN_JUDGED_POINTS, make_plan, print_plan
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port
from smartmetrics.config import load_config
from smartmetrics.engine.promql_syntax import promql_error
from smartmetrics.engine.series import align_down
from smartmetrics.instrument import InferenceMetrics

MODELS, TENANTS = ("resnet", "bert"), ("acme", "globex")


def mixed_metrics(end: int, hours: int = 12, step: int = 60) -> list[MetricSeries]:
    """The instrument's metrics for 2 models x 2 tenants, a node_exporter cpu counter, a DCGM gauge, an
    application counter with status codes, a queue, and what must be left alone (go_goroutines, a build
    info, a constant)."""
    rng = np.random.default_rng(27)
    ts = np.arange(end - hours * 3600, end + 1, step, dtype=np.int64)
    n = len(ts)

    def counter(rate: float) -> np.ndarray:
        return np.cumsum(rng.poisson(rate * step, n)).astype(float)

    out: list[MetricSeries] = []
    where = {"job": "serving", "instance": "10.0.0.1:8000"}
    for model in MODELS:
        for tenant in TENANTS:
            labels = {**where, "model_name": model, "model_version": "v1", "tenant_id": tenant, "framework": "torch"}
            ok = counter(5.0)
            for outcome, values in (("ok", ok), ("error", counter(0.1))):
                out.append(MetricSeries("inference_requests_total", {**labels, "outcome": outcome}, ts, values,
                                        kind="counter"))
            out += _histogram("inference_request_duration_seconds", labels, ts, np.diff(ok, prepend=0),
                              (0.05, 0.1, 0.25, 0.5, 1.0), np.array([0.1, 0.4, 0.8, 0.95, 0.99, 1.0]))
            out += _histogram("inference_prediction_confidence", labels, ts, np.diff(ok, prepend=0),
                              (0.5, 0.8, 0.9, 0.99), np.array([0.05, 0.2, 0.5, 0.9, 1.0]))
            out.append(MetricSeries("inference_requests_in_flight", labels, ts, rng.poisson(3, n).astype(float)))
    for cpu in "01":
        for mode, rate in (("idle", 0.7), ("user", 0.3)):
            out.append(MetricSeries("node_cpu_seconds_total", {"job": "node", "instance": "node1:9100", "cpu": cpu,
                                                               "mode": mode}, ts, counter(rate), kind="counter"))
    for gpu in "01":
        out.append(MetricSeries("DCGM_FI_DEV_GPU_UTIL", {"gpu": gpu, "Hostname": "gpu-node-1", "UUID": f"GPU-{gpu}aa"},
                                ts, rng.uniform(20, 90, n).round()))
    for instance in ("app-1:8080", "app-2:8080"):
        for code, rate in (("200", 20.0), ("500", 0.5)):
            out.append(MetricSeries("http_requests_total", {"job": "app", "instance": instance, "service": "checkout",
                                                            "code": code}, ts, counter(rate), kind="counter"))
    out.append(MetricSeries("queue_depth", {"job": "app", "queue": "jobs"}, ts, rng.poisson(12, n).astype(float)))
    out.append(MetricSeries("queue_capacity", {"job": "app", "queue": "jobs"}, ts, np.full(n, 100.0)))
    out.append(MetricSeries("go_goroutines", {"job": "serving"}, ts, rng.poisson(40, n).astype(float)))
    out.append(MetricSeries("serving_build_info", {"job": "serving", "version": "1.2.3"}, ts, np.ones(n)))
    return out


@pytest.fixture(scope="module")
def source(prometheus_binaries) -> Iterator[str]:
    with LocalPrometheus(mixed_metrics(align_down(time.time(), 60), hours=30)) as prom:  # > 1 day: fit classifies
        yield prom.url


def instant(url: str, expr: str) -> list[dict]:
    answer = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=30).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


EXPECTED = {
    "inference_qps": ("sum by (model_name, tenant_id) (rate(inference_requests_total[5m]))", "both"),
    "inference_latency_p95": ("histogram_quantile(0.95, sum by (model_name, tenant_id, le) "
                              "(rate(inference_request_duration_seconds_bucket[5m])))", "up"),
    "inference_latency_p99": ("histogram_quantile(0.99, sum by (model_name, tenant_id, le) "
                              "(rate(inference_request_duration_seconds_bucket[5m])))", "up"),
    "inference_confidence_median": ("histogram_quantile(0.5, sum by (model_name, tenant_id, le) "
                                    "(rate(inference_prediction_confidence_bucket[5m])))", "down"),
    "node_cpu_utilisation": ('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))', "both"),
    "gpu_utilisation": ("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "both"),
    "http_requests_rate": ("sum by (service) (rate(http_requests_total[5m]))", "both"),
    "queue_depth": ("sum by (queue) (queue_depth)", "both"),
}


def test_init_writes_a_config_that_loads_and_whose_exprs_return_series(source: str, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.yaml"
    assert main(["init", "--source", source, "--out", str(out)]) == 0
    config = load_config(out)
    baselines = config.baselines
    for alias, (expr, direction) in EXPECTED.items():
        assert alias in baselines, sorted(baselines)
        assert baselines[alias].expr == expr
        assert baselines[alias].alert.direction == direction
    errors = baselines["inference_error_ratio"]
    assert 'inference_requests_total{outcome="error"}' in errors.expr and "by (model_name, tenant_id)" in errors.expr
    assert errors.alert.direction == "up" and errors.range == (0.0, 1.0)
    assert baselines["http_requests_error_ratio"].range == (0.0, 1.0)
    assert 'code=~"5.."' in baselines["http_requests_error_ratio"].expr
    assert baselines["node_cpu_utilisation"].range == (0.0, 1.0)
    assert baselines["gpu_utilisation"].range == (0.0, 100.0)
    assert "model_name" in baselines["inference_in_flight"].expr
    written = out.read_text()
    for internal in ("go_goroutines", "serving_build_info", "queue_capacity"):
        assert all(internal not in b.expr for b in baselines.values())
    assert "# " in written and "why:" in written  # commented: each baseline says why
    assert config.sources["prometheus"].url == source
    for alias, baseline in baselines.items():
        assert instant(source, baseline.expr), alias
    assert main(["check-config", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out


def test_fit_fits_every_baseline_init_wrote(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """init's output end to end: `smartmetrics fit` on it exits 0 and every written baseline has at least
    one fitted series in the store."""
    monkeypatch.chdir(tmp_path)  # the written config's store is the default models/, here
    out = tmp_path / "config.yaml"
    assert main(["init", "--source", source, "--out", str(out)]) == 0
    written = set(load_config(out).baselines)
    assert main(["fit", "--config", str(out), "--workers", "1"]) == 0
    states, errors = load_store(tmp_path / "models")
    assert errors == []
    assert set(states) == written
    assert all(states[alias].series for alias in written), {a: len(s.series) for a, s in states.items()}
    assert any(band.meta.get("curve_type") not in (None, "insufficient") for state in states.values()
               for band in state.series)


def test_dry_run_writes_nothing_and_says_why(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.yaml"
    assert main(["init", "--source", source, "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    printed = capsys.readouterr().out
    assert "inference_qps" in printed and "gpu_utilisation" in printed
    assert "go_goroutines" in printed and "constant" in printed  # the skipped, with their reasons


def test_match_and_max_baselines(source: str, tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    assert main(["init", "--source", source, "--out", str(out), "--match", "^inference_"]) == 0
    assert all(a.startswith("inference_") for a in load_config(out).baselines)
    assert main(["init", "--source", source, "--out", str(out), "--max-baselines", "2"]) == 2  # no overwrite
    assert main(["init", "--source", source, "--out", str(out), "--max-baselines", "2", "--force"]) == 0
    assert list(load_config(out).baselines) == ["inference_error_ratio", "inference_latency_p95"]


def test_unreachable_source_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.yaml"
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["init", "--source", url, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and url in err
    assert not out.exists()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert main(["init", "--source", "prom:9090"]) == 2
    assert main(["init", "--source", "http://127.0.0.1:1", "--match", "("]) == 2


INCIDENT_BASELINES = {"traffic": "inference_qps", "latency": "inference_latency_p95", "error": "inference_error_ratio",
                      "GPU": "gpu_utilization_ratio"}


def test_on_the_demo_data_init_covers_the_four_incidents(prometheus_binaries, tmp_path: Path) -> None:
    """The demo's synthetic data uses the instrument's names: init's baselines hold every injected
    incident's series."""
    from smartmetrics.app.demo_data import DEMO_INCIDENTS, generate_demo_metrics

    out = tmp_path / "config.yaml"
    with LocalPrometheus(generate_demo_metrics(align_down(time.time(), 60), days=1)) as prom:
        assert main(["init", "--source", prom.url, "--out", str(out)]) == 0
        baselines = load_config(out).baselines
        for incident in DEMO_INCIDENTS:
            alias = next(a for kind, a in INCIDENT_BASELINES.items() if incident.what.startswith(kind))
            assert alias in baselines, (incident.what, sorted(baselines))
            found = [s["metric"] for s in instant(prom.url, baselines[alias].expr)]
            assert any(incident.labels.items() <= labels.items() for labels in found), (incident, found)


class FakeCatalog:
    """One gauge `queue_depth` that never varied, over `points` 5-minute points of history."""

    def __init__(self, points: int):
        self.points = points

    def fetch_names(self) -> list[str]:
        return ["queue_depth"]

    def fetch_metadata(self) -> dict[str, str]:
        return {"queue_depth": "gauge"}

    def fetch_series(self, name: str, limit: int) -> list[dict[str, str]]:
        return [{"queue": "jobs"}]

    def query(self, expr: str) -> list[dict]:
        if expr.startswith("count(stddev_over_time("):
            return []  # never varied
        if expr.startswith("max(count_over_time("):
            return [{"metric": {}, "value": [0, str(self.points)]}] if self.points else []
        return [{"metric": {}, "value": [0, "1"]}]  # count(expr): one series now


@pytest.mark.parametrize("points", [0, 1, MIN_JUDGED_POINTS - 1])
def test_too_little_history_to_judge_is_not_constant(points: int) -> None:
    """A Prometheus a minute old has no 5-minute points in the constancy window yet: not enough history
    to call anything constant, so the baseline is kept, and the dry run says why."""
    plan = make_plan(FakeCatalog(points), None, 5)
    assert [p.alias for p, _ in plan.proposals] == ["queue_depth"]
    why = plan.proposals[0][0].why
    assert f"too little history to judge constancy ({points} of {MIN_JUDGED_POINTS}" in why
    console = Console(record=True, width=400)
    print_plan(console, plan)
    assert "too little history to judge constancy" in console.export_text()


def test_enough_history_that_never_varied_is_constant() -> None:
    plan = make_plan(FakeCatalog(MIN_JUDGED_POINTS), None, 5)
    assert plan.proposals == []
    assert [(s.name, s.reason) for s in plan.skipped] == [("queue_depth", "constant over the last 6h (queue_depth)")]


# --- a real node_exporter and an instrumented service, scraped live -------------------------------

NODE_FLAGS = ("--no-collector.systemd", "--no-collector.textfile", "--no-collector.hwmon", "--no-collector.rapl",
              "--no-collector.thermal_zone", "--no-collector.powersupplyclass", "--no-collector.udp_queues")
"""Collectors that need D-Bus, privileges or files a test machine lacks: off (they only log errors)."""
INTERNALS = re.compile(r"\b(go_|process_|promhttp_|node_scrape_|scrape_|up\b)")


@contextmanager
def node_exporter(binary: str, workdir: Path) -> Iterator[str]:
    """Debian's node_exporter on 127.0.0.1 at a free port; its host:port once it serves /metrics."""
    for _ in range(3):  # the free port may be taken between probing and binding
        target = f"127.0.0.1:{free_port()}"
        with (workdir / "node_exporter.log").open("wb") as log:
            process = subprocess.Popen([binary, f"--web.listen-address={target}", *NODE_FLAGS], stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://{target}/metrics", timeout=2).status_code == 200:
                        yield target
                        return
                except httpx.HTTPError:
                    time.sleep(0.1)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    raise AssertionError("node_exporter did not start: " + (workdir / "node_exporter.log").read_text()[-2000:])


@contextmanager
def instrumented_service() -> Iterator[str]:
    """An example inference service: a `track`-decorated predict called in a loop by a thread (random
    latency and confidence, about one call in ten failing), its exporter on 127.0.0.1; its host:port."""
    metrics = InferenceMetrics("resnet", "v2", "torch")
    rng = random.Random(27)

    @metrics.track(tenant_id=lambda tenant: tenant)
    def predict(tenant: str) -> dict[str, float]:
        time.sleep(rng.uniform(0.001, 0.03))
        if rng.random() < 0.1:
            raise RuntimeError("model failed")
        return {"confidence": rng.uniform(0.5, 1.0)}

    stop = threading.Event()

    def serve_requests() -> None:
        while not stop.is_set():
            with suppress(RuntimeError):
                predict(rng.choice(TENANTS))

    exporter = metrics.serve(free_port(), "127.0.0.1")
    thread = threading.Thread(target=serve_requests, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{exporter.port}"
    finally:
        stop.set()
        thread.join(10)
        exporter.shutdown()


@pytest.mark.slow
@pytest.mark.prometheus
def test_init_on_a_live_node_exporter_and_instrumented_service(prometheus_binaries, node_exporter_binary: str,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A Prometheus scraping Debian's node_exporter and an instrumented service every second for ~25 s:
    init writes the node_exporter and instrument presets' baselines, every expr parses, returns series
    and passes check-config, none is on exporter internals, and the young source is said to be young."""
    out = tmp_path / "config.yaml"
    with node_exporter(node_exporter_binary, tmp_path) as node, instrumented_service() as service, \
            LocalPrometheus(scrape_interval="1s", jobs={"node": [node], "serving": [service]}) as prom:
        deadline = time.monotonic() + 60
        time.sleep(20)
        while time.monotonic() < deadline and not (instant(prom.url, "rate(node_cpu_seconds_total[5m])")
                                                   and instant(prom.url, "rate(inference_requests_total[5m])")):
            time.sleep(1)
        time.sleep(5)
        assert main(["init", "--source", prom.url, "--out", str(tmp_path / "dry.yaml"), "--dry-run"]) == 0
        printed = capsys.readouterr().out
        assert "too little history to judge constancy" in printed
        assert main(["init", "--source", prom.url, "--out", str(out)]) == 0
        baselines = load_config(out).baselines
        for alias in ("node_cpu_utilisation", "node_memory_utilisation", "inference_qps", "inference_error_ratio",
                      "inference_latency_p95", "inference_latency_p99", "inference_confidence_median"):
            assert alias in baselines, sorted(baselines)
        for alias, baseline in baselines.items():
            assert promql_error(baseline.expr) is None, (alias, baseline.expr)
            assert not INTERNALS.search(baseline.expr), (alias, baseline.expr)
            assert instant(prom.url, baseline.expr), (alias, baseline.expr)
        assert 'mode="idle"' in baselines["node_cpu_utilisation"].expr
        assert "by (model_name, tenant_id" in baselines["inference_latency_p95"].expr
    assert main(["check-config", str(out)]) == 0
