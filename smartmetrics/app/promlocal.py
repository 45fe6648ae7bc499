"""A throw-away local Prometheus: backfilled history, optional scrape targets and rules, clean shutdown.

Used by the tests, the benchmarks and `smartmetrics demo`. History is rendered as OpenMetrics text,
written into the TSDB with `promtool tsdb create-blocks-from openmetrics`, then `prometheus` is
started on 127.0.0.1 at a free port:

    with LocalPrometheus(series=[MetricSeries("up", {"job": "a"}, ts, vals)]) as prom:
        httpx.get(prom.url + "/api/v1/query", params={"query": "up"})
"""

from __future__ import annotations

import io
import math
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import httpx
import numpy as np
import yaml

from smartmetrics.engine.series import format_labels

INSTALL_HINT = "install them with: apt-get install prometheus"


class LocalPrometheusError(RuntimeError):
    """The local Prometheus could not be prepared or started; the message says why."""


@dataclass(frozen=True)
class MetricSeries:
    """One series to backfill: metric name, labels, timestamps (Unix seconds) and values."""

    name: str
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray
    kind: Literal["gauge", "counter"] = "gauge"
    help: str = field(default="", compare=False)


def find_binaries() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`, or a `LocalPrometheusError` saying how to install them."""
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise LocalPrometheusError(f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}")
    return found["prometheus"], found["promtool"]  # type: ignore[return-value]


def _family(series: MetricSeries) -> str:
    """The OpenMetrics family name: counters are declared without their `_total` suffix."""
    if series.kind == "counter":
        return series.name.removesuffix("_total")
    return series.name


def format_value(value: float) -> str:
    """A sample value in OpenMetrics spelling.

    >>> [format_value(v) for v in (1.5, float("nan"), float("inf"), float("-inf"), 3.0)]
    ['1.5', 'NaN', '+Inf', '-Inf', '3.0']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_openmetrics(series: Iterable[MetricSeries]) -> str:
    """OpenMetrics text for `series`, one family block per metric name, ending with `# EOF`.

    >>> s = MetricSeries("up", {"job": "a"}, np.array([60, 120]), np.array([1.0, 0.0]))
    >>> print(render_openmetrics([s]))
    # TYPE up gauge
    up{job="a"} 1.0 60
    up{job="a"} 0.0 120
    # EOF
    <BLANKLINE>
    """
    out = io.StringIO()
    write_openmetrics(series, out)
    return out.getvalue()


def write_openmetrics(series: Iterable[MetricSeries], out: TextIO) -> None:
    """`render_openmetrics` written to `out` one series at a time (a backfill of millions of samples
    never holds its whole text in memory)."""
    by_family: dict[str, list[MetricSeries]] = {}
    for s in series:
        by_family.setdefault(_family(s), []).append(s)
    for family, members in by_family.items():
        kinds = {m.kind for m in members}
        if len(kinds) > 1:
            raise ValueError(f"metric {family} is declared both gauge and counter")
        helps = [m.help for m in members if m.help]
        if helps:
            out.write(f"# HELP {family} {helps[0]}\n")
        out.write(f"# TYPE {family} {kinds.pop()}\n")
        out.writelines("\n".join(_render_samples(m)) + "\n" for m in members)
    out.write("# EOF\n")


def _render_samples(series: MetricSeries) -> list[str]:
    """The sample lines of one series; timestamps are written in seconds."""
    if len(series.timestamps) != len(series.values):
        raise ValueError(f"{series.name}{format_labels(series.labels)}: timestamps and values differ in length")
    head = series.name + (format_labels(series.labels).replace(", ", ",") if series.labels else "")
    stamps = [f"{t:g}" if t != int(t) else str(int(t)) for t in np.asarray(series.timestamps, dtype=float)]
    return [f"{head} {format_value(v)} {t}" for t, v in zip(stamps, series.values.tolist())]


def backfill(series: Iterable[MetricSeries], data_dir: str | Path, max_block: str = "24h") -> None:
    """Write `series` into the TSDB at `data_dir` with promtool (before Prometheus starts)."""
    _, promtool = find_binaries()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    text_file = data_dir.parent / f"{data_dir.name}.om.txt"
    with text_file.open("w") as out:
        write_openmetrics(series, out)
    cmd = [promtool, "tsdb", "create-blocks-from", "openmetrics",
           f"--max-block-duration={max_block}", str(text_file), str(data_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        text_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise LocalPrometheusError(f"promtool backfill failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def render_prometheus_config(
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[str | Path] = (),
    scrape_interval: str = "15s",
    honor_labels: bool = True,
    jobs: Mapping[str, Sequence[str]] | None = None,
    alertmanagers: Sequence[str] = (),
    out_of_order: str | None = None,
) -> str:
    """A minimal prometheus.yml: optional static scrape targets (job `smartmetrics`), other jobs'
    targets by job name, rule files, the Alertmanagers (host:port) their alerts go to, and how far
    back out-of-order samples are accepted (e.g. `30d`, for a backfill by remote write).

    >>> "honor_labels: true" in render_prometheus_config(["127.0.0.1:9877"])
    True
    """
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
    }
    if out_of_order:
        config["storage"] = {"tsdb": {"out_of_order_time_window": out_of_order}}
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    scrape_configs: list[dict[str, object]] = []
    if scrape_targets:
        scrape_configs.append({
            "job_name": "smartmetrics",
            "honor_labels": honor_labels,
            "static_configs": [{"targets": list(scrape_targets)}],
        })
    for job, targets in (jobs or {}).items():
        scrape_configs.append({"job_name": job, "static_configs": [{"targets": list(targets)}]})
    if scrape_configs:
        config["scrape_configs"] = scrape_configs
    return yaml.safe_dump(config, sort_keys=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def held_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 (its number: `.getsockname()[1]`), held until the
    caller closes it just before a server binds that port: while it is held, no other process's probe
    or outgoing connection is given the port, as one probed with `free_port` minutes ahead may be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEADDR: another socket with it
    sock.bind(("127.0.0.1", 0))  # could bind the same port while this one does not listen
    return sock


def start_on_free_port(
    launch: Callable[[int], subprocess.Popen], log: str | Path, listening: str, *, port: int | None = None,
    timeout: float = 60.0, attempts: int = 3,
) -> tuple[subprocess.Popen, int]:
    """Start a server process on a port of 127.0.0.1 and wait until it says it listens; the process and
    its port.

    `launch(port)` starts it with its output appended to `log`; `listening` in what it wrote since says
    it bound the port. A port probed by `free_port()` can be taken by another process before this one
    binds it: when the process exits saying the address is in use, it is started again on another.
    `port` is the first port to try (default: a free one). A process that exits for another reason, or
    does not say it listens within `timeout`, is returned as it is, for the caller's checks to report."""
    log = Path(log)
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None and attempt == 1 else free_port()
        mark = log.stat().st_size if log.exists() else 0
        process = launch(chosen)
        deadline = time.monotonic() + timeout
        while listening not in _written_since(log, mark) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        said = _written_since(log, mark)
        if attempt == attempts or listening in said or process.poll() is None \
                or "address already in use" not in said.lower():
            return process, chosen
    raise ValueError("attempts must be at least 1")


def _written_since(log: Path, mark: int) -> str:
    """What `log` holds past its first `mark` bytes ("" while it does not exist)."""
    try:
        with log.open("rb") as fh:
            fh.seek(mark)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


class LocalPrometheus:
    """A context manager running `prometheus` on 127.0.0.1 over a private, optionally backfilled TSDB."""

    def __init__(
        self,
        series: Iterable[MetricSeries] = (),
        *,
        scrape_targets: Sequence[str] = (),
        rule_files: Sequence[str | Path] = (),
        scrape_interval: str = "15s",
        workdir: str | Path | None = None,
        startup_timeout: float = 60.0,
        tls: tuple[str | Path, str | Path] | None = None,
        flags: Sequence[str] = (),
        jobs: Mapping[str, Sequence[str]] | None = None,
        alertmanagers: Sequence[str] = (),
        out_of_order: str | None = None,
    ):
        self.series = list(series)
        self.out_of_order = out_of_order  # storage.tsdb.out_of_order_time_window, e.g. 30d
        self.jobs = dict(jobs or {})  # more scrape jobs: name -> targets
        self.flags = list(flags)  # more command-line flags, e.g. --web.enable-remote-write-receiver
        self.scrape_targets = list(scrape_targets)
        self.alertmanagers = list(alertmanagers)  # host:port of the Alertmanagers the rules' alerts go to
        self.rule_files = list(rule_files)
        self.scrape_interval = scrape_interval
        self.startup_timeout = startup_timeout
        self.tls = tls  # (cert_file, key_file): serve HTTPS
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="smartmetrics-prom-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:41234` (https when serving TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Backfill, write the config, start Prometheus and wait until it answers `/-/ready`."""
        prometheus, _ = find_binaries()
        flags = self._prepare()
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            with (self.workdir / "prometheus.log").open("wb") as log_file:
                self.process = subprocess.Popen(
                    [prometheus, *flags, f"--web.listen-address=127.0.0.1:{self.port}"],
                    stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if self._wait_ready():
                return
            if "address already in use" not in self.log_tail():
                break
        tail = self.log_tail()
        self.stop()
        raise LocalPrometheusError(f"prometheus did not become ready within {self.startup_timeout:g}s:\n{tail}")

    def _prepare(self) -> list[str]:
        """Backfill the TSDB, write prometheus.yml (and web.yml for TLS); the command-line flags."""
        data_dir = self.workdir / "data"
        if self.series:
            backfill(self.series, data_dir)
        config_file = self.write_config()
        flags = [f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
                 "--storage.tsdb.retention.time=100y", "--web.enable-lifecycle", "--log.level=warn"]
        if self.tls:
            web_file = self.workdir / "web.yml"
            web_file.write_text(yaml.safe_dump({"tls_server_config": {
                "cert_file": str(self.tls[0]), "key_file": str(self.tls[1])}}))
            flags.append(f"--web.config.file={web_file}")
        return flags + self.flags

    def write_config(self) -> Path:
        """Write prometheus.yml for the current targets, jobs and rule files (`reload` applies it)."""
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(render_prometheus_config(self.scrape_targets, self.rule_files, self.scrape_interval,
                                                        jobs=self.jobs, alertmanagers=self.alertmanagers,
                                                        out_of_order=self.out_of_order))
        return config_file

    def _wait_ready(self) -> bool:
        """Poll `/-/ready` until it answers 200 (True) or the process exits or time runs out (False)."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/-/ready", timeout=2.0, verify=False).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of Prometheus' own log, for error messages."""
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def reload(self) -> None:
        """Ask Prometheus to re-read its config and rule files (`/-/reload`)."""
        httpx.post(self.url + "/-/reload", timeout=10.0, verify=False).raise_for_status()

    def retarget(self, scrape_targets: list[str] | None = None, alertmanagers: list[str] | None = None) -> None:
        """Scrape other targets, or alert other Alertmanagers, from now on (e.g. a daemon that had to
        move to another port): the config rewritten and reloaded."""
        if scrape_targets is not None:
            self.scrape_targets = list(scrape_targets)
        if alertmanagers is not None:
            self.alertmanagers = list(alertmanagers)
        self.write_config()
        self.reload()

    def stop(self) -> None:
        """Terminate Prometheus (kill it if it lingers) and remove the temporary directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
