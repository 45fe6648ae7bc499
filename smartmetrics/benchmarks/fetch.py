"""Fetch throughput: our reader against the naive one-request-per-series way, on the same Prometheus.

    python -m smartmetrics.benchmarks.fetch [--series 50] [--days 14] [--repeats 3]

Starts a local Prometheus backfilled with N series x `days` at 1-minute resolution, then fetches all
of them over `days` at a 1-minute step (a) with `smartmetrics.adapters.source.fetch_baseline` (chunked
`query_range`, concurrent requests) and (b) the way the Prometheus Anomaly Detector does, with
`prometheus_api_client.PrometheusConnect.get_metric_range_data`, one call per series, sequentially.
Prints series/s and MB/s (JSON bytes received) for each as the median of the repeats, their ratio,
and checks both returned the same number of points.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from smartmetrics.adapters.source import fetch_baseline
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries
from smartmetrics.config import parse_config
from smartmetrics.engine.series import align_down

METRIC = "bench_metric"
STEP = 60


@dataclass
class Run:
    """One timed fetch of every series, with the CPU it cost this process and Prometheus."""

    series: int
    points: int
    bytes: int
    requests: int
    seconds: float
    client_cpu: float = 0.0
    server_cpu: float = 0.0


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (Linux /proc; 0 elsewhere)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate_series(count: int, days: int, end: int, seed: int = 7) -> list[MetricSeries]:
    """`count` seeded random walks at 1-minute resolution over `days` ending at `end`."""
    rng = np.random.default_rng(seed)
    ts = np.arange(end - days * 86400, end + 1, STEP, dtype=np.int64)
    return [MetricSeries(METRIC, {"series": f"{i:04d}"}, ts, np.round(100 + np.cumsum(rng.normal(size=len(ts))), 3))
            for i in range(count)]


def fetch_ours(url: str, days: int, end: int, count: int) -> Run:
    """All series in one baseline through smartmetrics' reader."""
    config = parse_config({
        "sources": {"bench": {"url": url}},
        "baselines": {"bench": {"expr": METRIC, "step": f"{STEP}s", "history": f"{days}d", "max_series": count}},
    })
    result = fetch_baseline(config, "bench", end)
    return Run(len(result.series), result.points, result.bytes_received, result.requests, result.seconds)


def fetch_naive(url: str, days: int, end: int, count: int) -> Run:
    """One `get_metric_range_data` call per series, in sequence, as the Prometheus Anomaly Detector does."""
    from prometheus_api_client import PrometheusConnect

    client = PrometheusConnect(url=url, disable_ssl=True)
    received = [0, 0]

    def count_bytes(response, *args, **kwargs):  # type: ignore[no-untyped-def]
        received[0] += len(response.content)
        received[1] += 1

    client._session.hooks["response"].append(count_bytes)
    start_time = datetime.fromtimestamp(end - days * 86400, tz=timezone.utc)
    end_time = datetime.fromtimestamp(end, tz=timezone.utc)
    started, points, found = time.monotonic(), 0, 0
    for i in range(count):
        data = client.get_metric_range_data(METRIC, label_config={"series": f"{i:04d}"},
                                            start_time=start_time, end_time=end_time)
        found += len(data)
        points += sum(len(d["values"]) for d in data)
    return Run(found, points, received[0], received[1], time.monotonic() - started)


def timed(fetch: Callable[[], Run], server_pid: int) -> Run:
    """One run of `fetch` with the CPU seconds it cost here and in Prometheus."""
    client0, server0 = time.process_time(), process_cpu(server_pid)
    run = fetch()
    run.client_cpu, run.server_cpu = time.process_time() - client0, process_cpu(server_pid) - server0
    return run


def measure(fetch: Callable[[], Run], repeats: int, server_pid: int) -> tuple[Run, float, float]:
    """The median run (by wall time) and the medians of series/s and MB/s over `repeats` runs."""
    runs = sorted((timed(fetch, server_pid) for _ in range(repeats)), key=lambda r: r.seconds)
    series_rate = statistics.median(r.series / r.seconds for r in runs)
    mb_rate = statistics.median(r.bytes / 1e6 / r.seconds for r in runs)
    return runs[len(runs) // 2], series_rate, mb_rate


def render_table(rows: dict[str, tuple[Run, float, float]]) -> Table:
    """One row per method with its cost and throughput."""
    table = Table(box=box.SIMPLE_HEAD)
    columns = ("method", "series", "points", "requests", "MB received", "seconds", "client CPU s",
               "Prometheus CPU s", "series/s", "MB/s")
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, (run, series_rate, mb_rate) in rows.items():
        table.add_row(name, str(run.series), f"{run.points:,}", str(run.requests), f"{run.bytes / 1e6:.1f}",
                      f"{run.seconds:.2f}", f"{run.client_cpu:.2f}", f"{run.server_cpu:.2f}",
                      f"{series_rate:.1f}", f"{mb_rate:.1f}")
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 1 if the two ways disagree on the data."""
    parser = argparse.ArgumentParser(prog="python -m smartmetrics.benchmarks.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=50, help="how many series (default 50)")
    parser.add_argument("--days", type=int, default=14, help="history in days at 1-minute step (default 14)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method (default 3)")
    args = parser.parse_args(argv)
    if args.series < 1 or args.days < 1 or args.repeats < 1:
        parser.error("--series, --days and --repeats must be positive")
    out = Console(highlight=False, width=150)
    end = align_down(time.time(), 3600)
    started = time.monotonic()
    with LocalPrometheus(generate_series(args.series, args.days + 1, end)) as prom:
        out.print(f"{args.series} series x {args.days} days at {STEP}s step "
                  f"(backfill + start {time.monotonic() - started:.1f}s; {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.2f} before measuring)")
        methods = {
            "smartmetrics (chunked, concurrent)": lambda: fetch_ours(prom.url, args.days, end, args.series),
            "prometheus-api-client (per series)": lambda: fetch_naive(prom.url, args.days, end, args.series),
        }
        for fetch in methods.values():
            fetch()  # warm-up: page cache and connections, not timed
        assert prom.process is not None
        rows = {name: measure(fetch, args.repeats, prom.process.pid) for name, fetch in methods.items()}
    out.print(render_table(rows))
    out.print(f"load average after measuring {os.getloadavg()[0]:.2f}")
    (ours, our_rate, _), (naive, naive_rate, _) = rows.values()
    out.print(f"median of {args.repeats} repeats; smartmetrics fetches {our_rate / naive_rate:.1f}x "
              f"the series per second of the naive way")
    if ours.points != naive.points or ours.series != naive.series:
        out.print(f"MISMATCH: smartmetrics {ours.series} series / {ours.points:,} points, "
                  f"naive {naive.series} series / {naive.points:,} points")
        return 1
    out.print(f"same data: both got {ours.series} series and {ours.points:,} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
