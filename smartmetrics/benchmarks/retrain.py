"""Retrain benchmark (issue 22): `smartmetrics fit` end to end on a baseline of many series, checked.

    python -m smartmetrics.benchmarks.retrain [--sizes 1000,10000] [--days 14] [--prophet-series 5]

For each size N: N series of mixed kinds (daily-seasonal, stable, bursty, sparse; a quarter each),
`--days` + 1 days at 5 minutes, of which yesterday's window (the first `--days`) and today's (the last
`--days`: a new day at the end) are each backfilled into a real local Prometheus with promtool, both
ending now. Then, in one run:

- **smartmetrics fit**, its own process with 2 workers, on one baseline selecting all N series
  (`max_series: N`, source `timeout: 5s`), twice: the **first fit** on an empty store and
  yesterday's window (every series classified and backtested), then the **daily retrain** on the
  store it left and today's window, the store's classifications dated a day earlier as a retrain
  the day before would have left them: each series keeps its last fit's classification (and, where
  the new day agrees with it, its backtest: `engine.ensemble.kept_ensemble`) but the seventh whose
  weekly reclassification falls on this day and those whose level moved
  (`engine.ensemble.kept_classification`). Each: wall time from start to exit, and peak RSS of the
  process with its workers and of the process alone (sampled every 0.1 s). The store is read back
  after each: every series must have a finite band, the fit must report no failed piece or series,
  and the daily retrain must have kept some classifications and no more than the weekly rule
  allows (the first fit none), or the benchmark fails.
- **the bare-fetch limit**: the same series and range fetched with 8 concurrent `query_range`
  requests (httpx; each a batch of series by a regex on their `series` label, at most 250,000
  samples a request), each answer decoded with `json.loads` and nothing else, in a lean process of
  its own (`smartmetrics.benchmarks.barefetch`): what no retrain that reads Prometheus' JSON API
  from this machine can beat. Uncompressed, as the fit asks a loopback
  source (`compression: auto`); the same fetch with gzip-compressed answers (httpx's default, and
  the fit's before the option) is measured beside it.
- **one Prophet per series** (the Prometheus Anomaly Detector's way: fetch one series, fit Prophet,
  predict a day) on a sample of `--prophet-series`.

Prints per size: series/s of each, the fit's fraction of the fetch limit, its ratio to Prophet and
its peak RSS. Exits 1 when a series is missing from the store or a check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from smartmetrics.adapters.batches import MAX_BATCH_SERIES
from smartmetrics.adapters.store import load_store, save_baseline
from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries
from smartmetrics.benchmarks.daemon import prophet_per_series, rss_mb
from smartmetrics.benchmarks.faults import descendants
from smartmetrics.engine.series import align_down

METRIC = "bench_retrain"
STEP = 300
KINDS = ("seasonal", "stable", "bursty", "sparse")


def mixed_series(n: int, end: int, days: int, seed: int = 22) -> list[MetricSeries]:
    """n series, a quarter of each kind, every one with its own level and noise."""
    rng = np.random.default_rng(seed)
    ts = np.arange(end - days * 86400, end + 1, STEP, dtype=np.int64)
    day = np.sin(2 * np.pi * (ts % 86400) / 86400)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        level = rng.uniform(10, 1000)
        if kind == "seasonal":
            values = level * (1 + 0.4 * day) + rng.normal(0, 0.03 * level, len(ts))
        elif kind == "stable":
            values = level + rng.normal(0, 0.02 * level, len(ts))
        elif kind == "bursty":
            values = level * (1 + rng.exponential(0.3, len(ts)) * (rng.random(len(ts)) < 0.1))
        else:
            values = np.where(rng.random(len(ts)) < 0.03, rng.exponential(level * 0.01, len(ts)), 0.0)
        out.append(MetricSeries(METRIC, {"kind": kind, "series": str(i)}, ts, np.round(values, 4)))
    return out


@dataclass
class FitRun:
    seconds: float
    peak_rss_mb: float  # the process and its workers together, at the worst moment
    peak_main_mb: float  # the `smartmetrics fit` process alone
    stored: int
    banded: int
    output: str
    code: int
    cpu: float = 0.0  # CPU seconds of the process and its workers together
    kept: int = 0  # stored series whose fit kept the classification of the one before
    kept_backtests: int = 0  # ...and the members and calibration of its backtest


def _rss_mb(pids: set[int]) -> float:
    """Resident memory of these processes together (`rss_mb` of each; one that ended counts 0)."""
    total = 0.0
    for pid in pids:
        try:
            value = rss_mb(pid)
        except OSError:
            continue
        total += 0.0 if math.isnan(value) else value  # NaN: no VmRSS (a zombie)
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a running process has used so far (`/proc/PID/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process' children that have ended and been waited for (with theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_fit(config: Path, store: Path) -> FitRun:
    """`smartmetrics fit` as a process, timed, with its peak RSS (process and workers), its CPU time
    (workers included: they end before it does), and the store it left read back."""
    peak = peak_main = 0.0
    cpu0 = children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "smartmetrics", "fit", "--config", str(config), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "160"})
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read() if proc.stdout else ""), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, _rss_mb({proc.pid} | descendants(proc.pid)))
        peak_main = max(peak_main, _rss_mb({proc.pid}))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    reader.join(timeout=10)
    states, errors = load_store(store)
    bands = [b for s in states.values() for b in s.series] if not errors else []
    banded = sum(bool(np.isfinite(b.yhat).all() and np.isfinite(b.lower).all() and np.isfinite(b.upper).all())
                 for b in bands)
    kept = sum((b.meta.get("training") or {}).get("classification") == "kept" for b in bands)
    kept_backtests = sum((b.meta.get("training") or {}).get("ensemble") == "kept" for b in bands)
    return FitRun(seconds, peak, peak_main, len(bands), banded, "".join(output), proc.returncode,
                  children_cpu() - cpu0, kept, kept_backtests)


def dated_a_day_earlier(store: Path) -> dict[str, int]:
    """Date every stored classification a day earlier, as a retrain the day before would have left
    it; returns when each series (by key) was classified, as now stored. Run in a process of its own
    (`bench_size`), as `kept_allowed` is: the engine's imports would add their objects to the
    benchmark's heap, where each garbage collection during the bare fetch's `json.loads` rescans them
    (measured: 3.7 against 2.8 client CPU seconds for the same 1,000-series fetch)."""
    states, errors = load_store(store)
    if errors:
        raise RuntimeError(f"the first fit's store is unreadable: {errors}")
    dated = {}
    for state in states.values():
        for band in state.series:
            stamp = band.meta["classification"]["classified"]
            stamp["at"] -= 86400
            dated[band.key] = int(stamp["at"])
        save_baseline(store, state)
    return dated


def kept_allowed(store: Path, dated: dict[str, int]) -> int:
    """How many series of the daily retrain's `store` the weekly rule let keep the classification
    dated `dated[key]`: those whose reclassification week is the same at that time and at the end of
    the history the retrain fitted (read from the store, not foreseen: midnight may pass between the
    two fits)."""
    from smartmetrics.engine.ensemble import reclassify_week

    states, errors = load_store(store)
    if errors:
        raise RuntimeError(f"the daily retrain's store is unreadable: {errors}")
    bands = [band for state in states.values() for band in state.series if band.key in dated]
    return sum(reclassify_week(dated[b.key], b.key) == reclassify_week(b.meta["data_end"], b.key) for b in bands)


def bare_fetch(url: str, n: int, start: int, end: int, gzip: bool = False) -> tuple[int, float, float]:
    """(samples, wall seconds, client CPU seconds) of the bare fetch of every series over [start, end],
    run in a process of its own (`smartmetrics.benchmarks.barefetch`), in the fit's batches."""
    points = (end - start) // STEP + 1
    per_batch = min(MAX_BATCH_SERIES, max(1, 250_000 // points))  # the fit's batches
    got = json.loads(_child([sys.executable, "-m", "smartmetrics.benchmarks.barefetch", url, METRIC, str(n), str(start),
                             str(end), str(STEP), str(per_batch), *(["--gzip"] if gzip else [])], "the bare fetch"))
    return int(got["samples"]), float(got["seconds"]), float(got["cpu"])


class ChildFailed(RuntimeError):
    """A step the benchmark runs in a process of its own failed; the message holds what it printed."""


def _child(command: list[str], what: str) -> str:
    """The standard output of `command`, or `ChildFailed` with its exit code and error output."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ChildFailed(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def bench_size(n: int, days: int, prophet_n: int, root: Path, console: Console,
               max_samples: int | None = None, compression: str = "auto") -> dict[str, float] | None:
    end = align_down(time.time(), STEP)
    console.print(f"[dim]{n:,} series x {days} days at 5m: generating and backfilling ...[/dim]")
    # one day more than a fit's window: the first fit reads the first `days` of it from a Prometheus
    # where they end now, the daily retrain the last `days` (a new day at the end, the oldest gone)
    generated, shift = mixed_series(n, end, days + 1), 86400 // STEP
    yesterday = [dataclasses.replace(m, timestamps=m.timestamps[:-shift] + 86400, values=m.values[:-shift])
                 for m in generated]
    today = [dataclasses.replace(m, timestamps=m.timestamps[shift:], values=m.values[shift:]) for m in generated]
    del generated
    store = root / f"store-{n}"
    config = root / f"retrain-{n}.yaml"

    def write_config(url: str) -> None:  # the same baseline and source name: the same fit fingerprint
        config.write_text(yaml.safe_dump({
            "sources": {"prom": {"url": url, "timeout": "5s", "compression": compression,
                                 **({"max_samples_per_request": max_samples} if max_samples else {})}},
            "baselines": {"all": {"expr": METRIC, "step": "5m", "history": f"{days}d", "max_series": n}},
            "store": {"path": str(store)},
        }))

    with LocalPrometheus(yesterday) as before:
        del yesterday
        write_config(before.url)
        console.print("[dim]  smartmetrics fit: the first fit, on yesterday's window ...[/dim]")
        prom_cpu = cpu_seconds(before.process.pid)
        first = run_fit(config, store)
        prom_first_cpu = cpu_seconds(before.process.pid) - prom_cpu
    console.print("[dim]  backfilling today's window ...[/dim]")
    with LocalPrometheus(today) as prom:
        del today
        write_config(prom.url)
        dated = root / f"dated-{n}.json"
        _child([sys.executable, "-c", "import json, sys; from pathlib import Path; from smartmetrics.benchmarks."
                "retrain import dated_a_day_earlier as d; Path(sys.argv[2]).write_text(json.dumps(d(Path(sys.argv[1]))))",
                str(store), str(dated)], "dating the store a day back")
        console.print("[dim]  smartmetrics fit: the daily retrain ...[/dim]")
        prom_cpu = cpu_seconds(prom.process.pid)
        fit = run_fit(config, store)
        prom_fit_cpu = cpu_seconds(prom.process.pid) - prom_cpu
        keep = int(_child([sys.executable, "-c", "import json, sys; from pathlib import Path; from smartmetrics."
                           "benchmarks.retrain import kept_allowed; print(kept_allowed(Path(sys.argv[1]), "
                           "json.loads(Path(sys.argv[2]).read_text())))", str(store), str(dated)],
                          "counting what the weekly rule keeps"))
        console.print("[dim]  bare fetch ...[/dim]")
        prom_cpu = cpu_seconds(prom.process.pid)
        samples, fetch_s, client_cpu = bare_fetch(prom.url, n, end - days * 86400, end)
        fetch_cpu = (cpu_seconds(prom.process.pid) - prom_cpu, client_cpu)
        console.print("[dim]  bare fetch, gzip ...[/dim]")
        gzip_samples, gzip_s, _ = bare_fetch(prom.url, n, end - days * 86400, end, gzip=True)
        console.print(f"[dim]  one Prophet per series ({prophet_n}) ...[/dim]")
        t = time.perf_counter()
        prophet_per_series(prom.url, prophet_n, METRIC)
        prophet_s = time.perf_counter() - t
    expected_samples = n * ((days * 86400) // STEP + 1)
    problems = []
    for what, run, kept in (("the first fit", first, 0), ("the daily retrain", fit, keep)):
        if run.code != 0:
            problems.append(f"{what}: smartmetrics fit exited {run.code}:\n{run.output[-3000:]}")
        if run.stored != n or run.banded != n:
            problems.append(f"after {what} the store holds {run.stored} series, {run.banded} with a finite band, of {n}")
        if run.kept > kept or (kept and not run.kept):
            problems.append(f"{what} kept the classification of {run.kept} series, of {kept} the weekly rule allows")
        if run.kept_backtests > run.kept:
            problems.append(f"{what} kept the backtest of {run.kept_backtests} series, more than kept their type")
    for what, got in (("the bare fetch", samples), ("the bare fetch with gzip", gzip_samples)):
        if got != expected_samples:
            problems.append(f"{what} received {got:,} samples of {expected_samples:,}")
    if problems:
        for problem in problems:
            console.print(f"[red]error:[/red] {n:,} series: {problem}")
        return None
    return {"series": n, "fit": n / fit.seconds, "fetch": n / fetch_s, "gzip_fetch": n / gzip_s, "prophet": prophet_n / prophet_s,
            "rss": fit.peak_rss_mb, "main": fit.peak_main_mb, "seconds": fit.seconds, "fetch_seconds": fetch_s,
            "kept": fit.kept, "kept_backtests": fit.kept_backtests,
            "fit_cpu": fit.cpu, "prom_fit_cpu": prom_fit_cpu, "prom_fetch_cpu": fetch_cpu[0],
            "client_fetch_cpu": fetch_cpu[1], "first": n / first.seconds, "first_rss": first.peak_rss_mb,
            "first_main": first.peak_main_mb, "first_seconds": first.seconds, "first_cpu": first.cpu,
            "prom_first_cpu": prom_first_cpu}


def cpu_table(rows: list[dict[str, float]]) -> Table:
    """Where the seconds went: CPU seconds of Prometheus and of the client in each run, beside the
    wall time, so a run bound by the machine's cores shows as such (CPU / wall near the core count)."""
    table = Table(title="CPU seconds (both runs share the machine with Prometheus)", title_justify="left")
    for column in ("series", "run", "wall s", "Prometheus CPU s", "client CPU s", "CPU / wall", "client CPU ms/series"):
        table.add_column(column, justify="right")
    for r in rows:
        for run, wall, prom, client in (("first fit", r["first_seconds"], r["prom_first_cpu"], r["first_cpu"]),
                                        ("daily retrain", r["seconds"], r["prom_fit_cpu"], r["fit_cpu"]),
                                        ("bare fetch", r["fetch_seconds"], r["prom_fetch_cpu"], r["client_fetch_cpu"])):
            table.add_row(f"{r['series']:,}", run, f"{wall:.1f}", f"{prom:.1f}", f"{client:.1f}",
                          f"{(prom + client) / wall:.2f}", f"{1000 * client / r['series']:.1f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated series counts (default 1000,10000)")
    parser.add_argument("--days", type=int, default=14, help="days of history at 5 minutes (default 14)")
    parser.add_argument("--prophet-series", type=int, default=5, help="series fitted by the Prophet peer (default 5)")
    parser.add_argument("--max-samples-per-request", type=int, default=None, metavar="N",
                        help="the source's max_samples_per_request (default: the config's own, 250,000)")
    parser.add_argument("--compression", choices=("auto", "gzip", "none"), default="auto",
                        help="the source's compression (default auto: none from this loopback Prometheus)")
    args = parser.parse_args(argv)
    console = Console(width=140)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sm-retrain-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            try:
                row = bench_size(n, args.days, args.prophet_series, Path(tmp), console, args.max_samples_per_request,
                                 args.compression)
            except ChildFailed as exc:
                console.print(f"[red]error:[/red] {n:,} series: {exc}")
                return 1
            if row is None:
                return 1
            rows.append(row)
    table = Table(title=f"daily retrain end to end: smartmetrics fit (2 workers) on a real Prometheus, {args.days} days "
                        "at 5m, mixed curves", title_justify="left")
    for column in ("series", "run", "fit series/s", "bare fetch series/s", "of the fetch limit", "with gzip: series/s",
                   "of it", "Prophet series/s", "x Prophet", "peak RSS (main process)", "fit seconds"):
        table.add_column(column, justify="right")
    for r in rows:
        for run, rate, rss, main_rss, seconds in (
                ("first fit", r["first"], r["first_rss"], r["first_main"], r["first_seconds"]),
                ("daily retrain", r["fit"], r["rss"], r["main"], r["seconds"])):
            table.add_row(f"{r['series']:,}", run, f"{rate:.1f}", f"{r['fetch']:.1f}", f"{rate / r['fetch']:.1%}",
                          f"{r['gzip_fetch']:.1f}", f"{rate / r['gzip_fetch']:.0%}", f"{r['prophet']:.2f}",
                          f"{rate / r['prophet']:.0f}x", f"{rss:.0f} MB ({main_rss:.0f} MB)", f"{seconds:.1f}")
    console.print(table)
    console.print(cpu_table(rows))
    console.print("every series fitted and stored with a finite band by both runs; the daily retrain kept the "
                  "classifications the weekly rule keeps, the first fit none; the bare fetch received every sample")
    console.print("the daily retrain kept " + "; ".join(
        f"at {r['series']:,} series {r['kept']:,} curve types and {r['kept_backtests']:,} backtests" for r in rows
        if "kept" in r) + " (a kept type's backtest is made again where the newest day disagrees with it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
