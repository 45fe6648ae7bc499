"""Shared fixtures: a real local Prometheus with generated history, and configs pointing at it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from smartmetrics.app.promlocal import LocalPrometheus, LocalPrometheusError, MetricSeries, find_binaries
from smartmetrics.config import Config, parse_config
from smartmetrics.engine.series import align_down

# --- real Prometheus with backfilled history -------------------------------------------------

HISTORY_DAYS = 15
HISTORY_STEP = 60
GAP_HOURS = (7 * 24, 7 * 24 + 3)  # hours after the start where `sm_gappy` has no samples


@dataclass(frozen=True)
class PromHistory:
    """A running Prometheus and the series backfilled into it (1-minute samples, start..end inclusive)."""

    url: str
    start: int
    end: int
    series: list[MetricSeries]

    def expected(self, name: str, **labels: str) -> MetricSeries:
        """The generated series with this metric name and exactly these labels."""
        return next(s for s in self.series if s.name == name and s.labels == labels)


def generate_history(end: int, days: int = HISTORY_DAYS, step: int = HISTORY_STEP) -> list[MetricSeries]:
    """Seeded synthetic metrics: daily-seasonal rates, noisy latencies, counters, a gappy series, a
    series carrying its own `baseline` label."""
    rng = np.random.default_rng(20240611)
    ts = np.arange(end - days * 86400, end + 1, step, dtype=np.int64)
    daily = np.sin(2 * np.pi * (ts % 86400) / 86400)
    out: list[MetricSeries] = []
    for i, inst in enumerate("abc"):
        labels = {"job": "api", "instance": inst}
        out.append(MetricSeries("sm_requests_rate", labels, ts, 100 + 10 * i + 30 * daily))
        out.append(MetricSeries("sm_latency_seconds", labels, ts, 0.2 + 0.01 * rng.standard_normal(len(ts))))
    for inst in "ab":
        increments = rng.poisson(50, len(ts)).astype(float)
        out.append(MetricSeries("sm_requests_total", {"job": "api", "instance": inst}, ts,
                                np.cumsum(increments), kind="counter"))
    gap = (ts >= ts[0] + GAP_HOURS[0] * 3600) & (ts < ts[0] + GAP_HOURS[1] * 3600)
    gappy = 5 + daily.copy()
    gappy[-100], gappy[-50], gappy[-20] = np.nan, np.inf, -np.inf
    out.append(MetricSeries("sm_gappy", {"job": "batch"}, ts[~gap], gappy[~gap]))
    out.append(MetricSeries("sm_labelled", {"job": "x", "baseline": "theirs"}, ts, np.full(len(ts), 1.0)))
    return out


@pytest.fixture(scope="session")
def prometheus_binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool; skipped without them, except in CI where that is a failure."""
    try:
        return find_binaries()
    except LocalPrometheusError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {exc}")
        pytest.skip(str(exc))


def debian_binary(package: str, upstream: str) -> str:
    """Path of Debian's `package` binary (or the `upstream` name on PATH); skipped without it, except
    in CI (`.ci/run` installs it) where that is a failure."""
    found = shutil.which(package) or shutil.which(upstream)
    if found is None:
        why = f"{package} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}")
        pytest.skip(why)
    return found


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return debian_binary("prometheus-alertmanager", "alertmanager")


@pytest.fixture(scope="session")
def node_exporter_binary() -> str:
    return debian_binary("prometheus-node-exporter", "node_exporter")


@pytest.fixture(scope="session")
def promtool(prometheus_binaries: tuple[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run promtool, e.g. `promtool("test", "rules", "cases.yml", cwd=folder)`; output captured."""
    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([prometheus_binaries[1], *args], check=False, cwd=cwd, capture_output=True,
                              text=True, timeout=120)
    return run


@pytest.fixture(scope="session")
def promtool_passes(promtool) -> Callable[[Path, dict[str, str]], tuple[int, list[dict]]]:
    """Write generated rule files into a folder and have promtool judge them: `check rules` and then
    `test rules` must both pass; returns (rules found, the unit-test cases) for the caller's counts."""
    from smartmetrics.render.parts import write_files
    from smartmetrics.render.rules import RULES_FILE, TESTS_FILE

    def judge(folder: Path, files: dict[str, str]) -> tuple[int, list[dict]]:
        write_files(folder, files)
        check = promtool("check", "rules", RULES_FILE, cwd=folder)
        assert check.returncode == 0, check.stdout + check.stderr
        found = re.search(r"SUCCESS: (\d+) rules found", check.stdout)
        assert found, check.stdout
        run = promtool("test", "rules", TESTS_FILE, cwd=folder)
        assert run.returncode == 0, run.stdout + run.stderr
        return int(found.group(1)), yaml.safe_load((folder / TESTS_FILE).read_text())["tests"]
    return judge


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="session")
def prometheus(prometheus_binaries: tuple[str, str]) -> Iterator[PromHistory]:
    """One Prometheus for the whole session, with generated history backfilled."""
    end = align_down(time.time(), 3600)
    series = generate_history(end)
    with LocalPrometheus(series) as prom:
        yield PromHistory(prom.url, end - HISTORY_DAYS * 86400, end, series)


# --- configs ----------------------------------------------------------------------------------


@pytest.fixture
def make_config() -> Callable[..., Config]:
    """Build a `Config` with one source `main` at `url` and the given baselines (dicts of options)."""

    def build(url: str, baselines: dict[str, dict[str, Any]], **source: Any) -> Config:
        return parse_config({"sources": {"main": {"url": url, **source}}, "baselines": baselines})

    return build


# --- golden files -----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/golden/<name>, or rewrite that file under `--update-golden`."""
    from pathlib import Path

    root = Path(__file__).parent / "golden"

    def check(name: str, text: str) -> None:
        path = root / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"{path} is missing; run pytest --update-golden"
        assert text == path.read_text(), f"{name} differs from its golden file; run pytest --update-golden if intended"

    return check
