"""Daemon benchmark: scrape time, RSS and time to ready at 1k/10k/100k stored series, and the
end-to-end daily retrain throughput against a real Prometheus, beside one Prophet per series (PAD).

    python -m smartmetrics.benchmarks.daemon [--sizes 1000,10000,100000] [--retrain-series 100]
        [--shards 3 --per-shard 100000]

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


def write_config(path: Path, n_baselines: int, store: Path, port: int, prom_url: str, history: str = "14d",
                 shard: int = 0, shards: int = 1) -> dict:
    config = {
        "sharding": {"shard": shard, "shards": shards},
        "sources": {"prom": {"url": prom_url, "retries": 0, "timeout": "2s"}},
        "baselines": {f"b{i}": {"expr": f'bench_metric{{shard="{i}"}}', "step": "5m", "history": history}
                      for i in range(n_baselines)},
        "schedule": {"discover": "1d", "jitter": "0s"},
        "store": {"path": str(store)},
        "server": {"listen": f"127.0.0.1:{port}"},
    }
    path.write_text(yaml.safe_dump(config))
    return config


def build_store(n: int, root: Path, port: int, shard: int = 0, shards: int = 1) -> tuple[Path, int]:
    """A store of n series in baselines of at most 10k, fresh enough that nothing is due for a retrain;
    sharded, only this shard's share of them. Returns the config and how many series the store holds."""
    rng = np.random.default_rng(shard)
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    start = align_down(now, 300) - 300
    n_baselines = -(-n // PER_BASELINE)
    config = parse_config(write_config(root / "config.yaml", n_baselines, root / "models", port,
                                       "http://127.0.0.1:9", shard=shard, shards=shards))
    held = 0
    for b in range(n_baselines):
        alias = f"b{b}"
        count = min(PER_BASELINE, n - b * PER_BASELINE)
        bands = []
        for i in range(count):
            labels = {"instance": f"10.{b}.{i // 256}.{i % 256}:9100", "job": "node", "model": f"m{i % 40}"}
            if not config.sharding.owns(alias, labels):
                continue
            y = 100 + 10 * rng.standard_normal() + np.sin(np.arange(POINTS) / 20)
            bands.append(SeriesBand(labels, start, 300, y, y - 5, y + 5, meta={"curve_type": "seasonal", "model": "x"}))
        meta = {"fingerprint": fit_fingerprint(config.baselines[alias]), "sharding": [shard, shards]}  # as a fit writes
        save_baseline(root / "models", BaselineState(alias, now, tuple(bands), meta))
        held += len(bands)
    return root / "config.yaml", held


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_daemon(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smartmetrics", "--log-level", "warning", "run",
                             "--config", str(config), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, proc: subprocess.Popen, t0: float) -> float:
    """Seconds from `t0` until the daemon at `url` answers /-/ready (fails loudly if it exited)."""
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"error: the daemon at {url} exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/-/ready", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def scrape(url: str, proc: subprocess.Popen) -> dict[str, float]:
    """The median of 5 /metrics scrapes, the body, the series exported and the daemon's RSS after."""
    times, size = [], 0
    for _ in range(5):
        t = time.perf_counter()
        body = httpx.get(url + "/metrics", timeout=60).content
        times.append(time.perf_counter() - t)
        size = len(body)
    exported = body.count(b"\nsmartmetrics_yhat{")
    return {"exported": exported, "scrape_s": statistics.median(times), "scrape_mb": size / 1e6,
            "rss_mb": rss_mb(proc.pid)}


def measure_size(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config, _ = build_store(n, Path(tmp), port)
        t0 = time.monotonic()
        proc = start_daemon(config)
        try:
            url = f"http://127.0.0.1:{port}"
            ready = wait_ready(url, proc, t0)
            return {"series": n, "ready_s": ready, **scrape(url, proc)}
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def measure_shards(per_shard: int, shards: int) -> list[dict[str, float]]:
    """`shards` daemons started at once, each with a store of its share of `per_shard * shards` series;
    each one's time to ready, scrape and RSS. Fails unless every series is exported by exactly one."""
    total = per_shard * shards
    with tempfile.TemporaryDirectory() as tmp:
        setups = []
        for shard in range(shards):
            port = free_port()
            config, held = build_store(total, Path(tmp) / f"shard{shard}", port, shard, shards)
            setups.append((shard, port, config, held))
        if sum(held for *_, held in setups) != total:
            raise SystemExit(f"error: the shards' stores hold {sum(h for *_, h in setups)} of {total} series")
        t0 = time.monotonic()
        procs = [(shard, port, held, start_daemon(config)) for shard, port, config, held in setups]
        try:
            rows = []
            for shard, port, held, proc in procs:
                url = f"http://127.0.0.1:{port}"
                rows.append({"shard": shard, "series": held, "ready_s": wait_ready(url, proc, t0)})
            for row, (_, port, held, proc) in zip(rows, procs, strict=True):
                row.update(scrape(f"http://127.0.0.1:{port}", proc))
                if row["exported"] != held:
                    raise SystemExit(f"error: shard {row['shard']} exported {row['exported']} of its {held} series")
            return rows
        finally:
            for *_, proc in procs:
                proc.terminate()
            for *_, proc in procs:
                proc.wait(timeout=60)


def bench_shards(per_shard: int, shards: int, console: Console) -> None:
    table = Table(title=f"{shards} sharded daemons started at once, {per_shard * shards:,} series in all "
                        "(targets: each ready <= 10 s, /metrics <= 1 s, RSS <= 2 GB)")
    for col in ("shard", "series", "start to ready (s)", "/metrics median (s)", "body (MB)", "RSS (MB)"):
        table.add_column(col, justify="right")
    for r in measure_shards(per_shard, shards):
        table.add_row(str(r["shard"]), f"{r['exported']:,}", f"{r['ready_s']:.2f}", f"{r['scrape_s']:.3f}",
                      f"{r['scrape_mb']:.1f}", f"{r['rss_mb']:.0f}")
    console.print(table)


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
    from smartmetrics.app.workers import pool_for

    end = align_down(time.time(), 300)
    with tempfile.TemporaryDirectory() as tmp, LocalPrometheus(history_series(n, end)) as prom:
        root = Path(tmp)
        config = parse_config(write_config(root / "c.yaml", 1, root / "models", free_port(), prom.url))
        t = time.perf_counter()
        code = run_fit(config, ["b0"], pool_for(config.cluster, 2))
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
    parser.add_argument("--shards", type=int, default=0, help="also run this many sharded daemons at once (0: skip)")
    parser.add_argument("--per-shard", type=int, default=100_000, help="series per sharded daemon")
    args = parser.parse_args(argv)
    console = Console(width=120)
    if args.sizes:
        bench_sizes([int(s) for s in args.sizes.split(",")], console)
    if args.shards:
        bench_shards(args.per_shard, args.shards, console)
    if args.retrain_series:
        bench_retrain(args.retrain_series, args.prophet_series, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
