"""Daemon benchmark: scrape time, RSS and time to ready at 1k/10k/100k stored series, and the
end-to-end daily retrain throughput against a real Prometheus, beside one Prophet per series (PAD).

    python -m smartmetrics.benchmarks.daemon [--sizes 1000,10000,100000] [--retrain-series 100]

Each size gets a synthetic store (forecast tables of 1d + 6h at 5-minute step) and a real
`smartmetrics run` process whose source is unreachable, so only the store is served; the figures are
time from process start to `/-/ready`, the median of 5 `/metrics` scrapes over HTTP, and the daemon's
resident memory (VmRSS of the main process, which holds the snapshot) after scraping.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from smartmetrics.adapters.store import load_store, save_baseline
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries, free_port
from smartmetrics.config import parse_config
from smartmetrics.engine.series import align_down
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.settings import fit_fingerprint

PER_BASELINE = 10_000
POINTS = 361  # 1d + 6h at 5m, plus the lead-in point


def write_config(path: Path, n_baselines: int, store: Path, port: int, prom_url: str, history: str = "14d") -> dict:
    config = {
        "sources": {"prom": {"url": prom_url, "retries": 0, "timeout": "2s"}},
        "baselines": {f"b{i}": {"expr": f'bench_metric{{shard="{i}"}}', "step": "5m", "history": history}
                      for i in range(n_baselines)},
        "schedule": {"discover": "1d", "jitter": "0s"},
        "store": {"path": str(store)},
        "server": {"listen": f"127.0.0.1:{port}"},
    }
    path.write_text(yaml.safe_dump(config))
    return config


def build_store(n: int, root: Path, port: int) -> Path:
    """A store of n series in baselines of at most 10k, fresh enough that nothing is due for a retrain."""
    rng = np.random.default_rng(0)
    now = time.time()
    start = align_down(now, 300) - 300
    n_baselines = -(-n // PER_BASELINE)
    config = parse_config(write_config(root / "config.yaml", n_baselines, root / "models", port, "http://127.0.0.1:9"))
    for b in range(n_baselines):
        alias = f"b{b}"
        count = min(PER_BASELINE, n - b * PER_BASELINE)
        bands = []
        for i in range(count):
            y = 100 + 10 * rng.standard_normal() + np.sin(np.arange(POINTS) / 20)
            labels = {"instance": f"10.{b}.{i // 256}.{i % 256}:9100", "job": "node", "model": f"m{i % 40}"}
            bands.append(SeriesBand(labels, start, 300, y, y - 5, y + 5, meta={"curve_type": "seasonal", "model": "x"}))
        meta = {"fingerprint": fit_fingerprint(config.baselines[alias])}
        save_baseline(root / "models", BaselineState(alias, now, tuple(bands), meta))
    return root / "config.yaml"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_size(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = build_store(n, Path(tmp), port)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "smartmetrics", "--log-level", "warning", "run",
                                 "--config", str(config), "--workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if httpx.get(url + "/-/ready", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            ready = time.monotonic() - t0
            times, size = [], 0
            for _ in range(5):
                t = time.perf_counter()
                body = httpx.get(url + "/metrics", timeout=60).content
                times.append(time.perf_counter() - t)
                size = len(body)
            exported = body.count(b"\nsmartmetrics_yhat{")
            return {"series": n, "exported": exported, "ready_s": ready, "scrape_s": statistics.median(times),
                    "scrape_mb": size / 1e6, "rss_mb": rss_mb(proc.pid)}
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def bench_sizes(sizes: list[int], console: Console) -> None:
    table = Table(title="daemon: store of N series (targets: 100k scraped in <= 1 s, <= 2 GB RSS)")
    for col in ("series", "exported", "start to ready (s)", "/metrics median (s)", "body (MB)", "RSS (MB)"):
        table.add_column(col, justify="right")
    for n in sizes:
        r = measure_size(n)
        table.add_row(f"{n:,}", f"{r['exported']:,}", f"{r['ready_s']:.2f}", f"{r['scrape_s']:.3f}",
                      f"{r['scrape_mb']:.1f}", f"{r['rss_mb']:.0f}")
        console.print(f"  measured {n:,} series", style="dim")
    console.print(table)


def history_series(n: int, end: int, days: int = 14, step: int = 300) -> list[MetricSeries]:
    """n daily-seasonal series with weekly modulation and noise, sharded for the bench config."""
    rng = np.random.default_rng(1)
    ts = np.arange(end - days * 86400, end + 1, step, dtype=np.int64)
    day = np.sin(2 * np.pi * (ts % 86400) / 86400)
    week = 1 + 0.2 * np.sin(2 * np.pi * (ts % 604800) / 604800)
    return [
        MetricSeries("bench_metric", {"shard": "0", "series": str(i)}, ts,
                     (200 + 50 * rng.random()) * week * (1 + 0.4 * day) + rng.normal(0, 5, len(ts)))
        for i in range(n)
    ]


def bench_retrain(n: int, prophet_n: int, console: Console) -> None:
    """smartmetrics fetch+classify+fit+store for n series vs fetch+Prophet (PAD's way) for a sample."""
    from smartmetrics.app.fit import run_fit

    end = align_down(time.time(), 300)
    with tempfile.TemporaryDirectory() as tmp, LocalPrometheus(history_series(n, end)) as prom:
        root = Path(tmp)
        config = parse_config(write_config(root / "c.yaml", 1, root / "models", free_port(), prom.url))
        t = time.perf_counter()
        code = run_fit(config, ["b0"], workers=2)
        ours = n / (time.perf_counter() - t)
        states, errors = load_store(root / "models")
        stored = len(states["b0"].series) if "b0" in states and not errors else 0
        if code != 0 or stored != n:  # a figure for a retrain that fetched or fitted nothing is no figure
            raise SystemExit(f"error: the retrain stored {stored} of {n} series (fit exit {code}); no figure")
        t = time.perf_counter()
        prophet_per_series(prom.url, prophet_n)
        theirs = prophet_n / (time.perf_counter() - t)
    table = Table(title=f"daily retrain end to end: {n} series x 14 days at 5m, real Prometheus, 2 workers")
    for col in ("engine", "series", "series/s", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("smartmetrics fit (fetch, classify, ensemble, store)", str(n), f"{ours:.1f}", f"{ours / theirs:.0f}x")
    table.add_row("one Prophet per series (PAD: prometheus-api-client + Prophet)", str(prophet_n), f"{theirs:.2f}", "1x")
    console.print(table)


def prophet_per_series(url: str, n: int, metric: str = "bench_metric") -> None:
    """PAD's loop: fetch one series' raw samples, fit Prophet (daily+weekly+yearly), predict a day."""
    import logging

    import pandas as pd
    from prometheus_api_client import PrometheusConnect
    from prophet import Prophet

    logging.getLogger("cmdstanpy").disabled = True
    logging.getLogger("prophet").setLevel(logging.ERROR)
    client = PrometheusConnect(url=url, disable_ssl=True)
    end = pd.Timestamp.now(tz="UTC").to_pydatetime()
    for i in range(n):
        data = client.get_metric_range_data(metric, label_config={"series": str(i)},
                                            start_time=end - pd.Timedelta(days=14), end_time=end)
        values = data[0]["values"]
        frame = pd.DataFrame({"ds": pd.to_datetime([float(v[0]) for v in values], unit="s"),
                              "y": [float(v[1]) for v in values]})
        model = Prophet(daily_seasonality=True, weekly_seasonality=True, yearly_seasonality=True)
        model.fit(frame)
        model.predict(model.make_future_dataframe(periods=288, freq="5min", include_history=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated store sizes")
    parser.add_argument("--retrain-series", type=int, default=100, help="series in the retrain benchmark (0: skip)")
    parser.add_argument("--prophet-series", type=int, default=10, help="series fitted by the Prophet peer")
    args = parser.parse_args(argv)
    console = Console(width=120)
    if args.sizes:
        bench_sizes([int(s) for s in args.sizes.split(",")], console)
    if args.retrain_series:
        bench_retrain(args.retrain_series, args.prophet_series, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
