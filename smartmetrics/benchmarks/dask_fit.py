"""Fits on a Dask cluster beside the local process pool: the same series, the same bands, the time,
and what a retrain of 1,000,000 series would take on N workers.

Starts two real Dask clusters on this machine (a `dask scheduler` with 1 `dask worker` process, and
one with `--workers`), fits one synthetic corpus (14 days at 5 minutes) through `app.fitstream.fit_all`
on the local pool of 1 and of `--workers` processes and on each cluster, in turns, checks that every
series was fitted every time and that the bands are identical to the last bit, and prints the
throughput of each and the Dask / local ratios. Each batch is timed inside its worker, which splits
a run's worker time into a cost per series (the fits) and an overhead per batch (shipping, scheduling,
idle slots: the rest of slots x wall time); with this process's CPU per series (submitting and
reading results) they project a 1,000,000-series retrain on N workers. Exits non-zero if any check
fails.

    python -m smartmetrics.benchmarks.dask_fit [--series 300] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartmetrics.app.promlocal import free_port, start_on_free_port
from smartmetrics.app.workers import FitPool
from smartmetrics.engine.batch import MAX_BATCH

DAY = 86400
PROJECT_SERIES = 1_000_000
PROJECT_WORKERS = (2, 8, 32, 64)
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_ENV = {
    **SINGLE_THREADED,
    # the worker's statistical profiler samples every thread's stack every 10 ms, holding the GIL
    # the fits need; deploy/kubernetes/dask.yaml turns it off too
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    # the memory monitor (every 100 ms) and the system monitor (every 500 ms) poll psutil in every
    # process; fits of a few milliseconds each feel it on a machine with as many workers as cores
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "2s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
}


def _dask_command() -> list[str]:
    """The `dask` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("dask")
    found = str(beside) if beside.exists() else shutil.which("dask")
    if found is None:
        raise SystemExit("the `dask` command is missing: pip install 'smartmetrics[dask]'")
    return [found]


@contextlib.contextmanager
def dask_cluster(workers: int = 2, threads: int = 1, timeout: float = 60.0) -> Iterator[tuple[str, list]]:
    """A real scheduler and `workers` worker processes of `threads` threads on 127.0.0.1; yields the
    scheduler address and the worker `Popen`s (one `dask worker` per process, so each can be killed)."""
    env = {**os.environ, **WORKER_ENV}
    logs = tempfile.TemporaryDirectory(prefix="smartmetrics-dask-")
    started: list[subprocess.Popen] = []

    def spawn(args: list[str], name: str) -> subprocess.Popen:
        out = open(Path(logs.name) / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(_dask_command() + args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append(proc)
        return proc

    try:
        address = _start_scheduler(spawn, Path(logs.name) / "scheduler.log", timeout)
        worker_procs = [
            spawn(["worker", address, "--nworkers", "1", "--nthreads", str(threads), "--no-dashboard",
                   "--host", "127.0.0.1", "--name", f"w{i}"], f"worker{i}")
            for i in range(workers)
        ]
        _wait_for_workers(address, workers, timeout, logs.name)
        yield address, worker_procs
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
        logs.cleanup()


def _start_scheduler(spawn: Callable[[list[str], str], subprocess.Popen], log: Path, timeout: float) -> str:
    """Start `dask scheduler` on a free port of 127.0.0.1 and wait until it listens; its address. A port
    taken between probing and binding is tried again on another (`start_on_free_port`)."""
    def launch(port: int) -> subprocess.Popen:
        return spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler")

    proc, port = start_on_free_port(launch, log, "Scheduler at:", port=free_port(), timeout=timeout)
    text = log.read_text(errors="replace")  # a failed attempt never says where it listens
    if proc.poll() is None and "Scheduler at:" in text:
        return f"tcp://127.0.0.1:{port}"
    causes = [line for line in text.splitlines() if "Error" in line] or text.splitlines()[-5:]
    raise RuntimeError(f"the Dask scheduler did not start within {timeout:g}s: " + " | ".join(causes[-4:]))


def _wait_for_workers(address: str, workers: int, timeout: float, logs: str) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Client(address, timeout=5, set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                tails = {p.name: p.read_text(errors="replace")[-500:] for p in Path(logs).glob("*.log")}
                raise RuntimeError(f"the Dask cluster at {address} did not come up: {exc}; logs: {tails}") from None
            time.sleep(0.5)


def fingerprints(fitted: list) -> dict[str, str]:
    """Each fitted series in its stored JSON form (floats written exactly), by its labels."""
    return {json.dumps(f.labels, sort_keys=True): json.dumps(f.to_dict(), sort_keys=True, default=str)
            for f in fitted}


def identical(a: list, b: list) -> bool:
    """Whether two fits of the same series gave the same state (bands, models, weights, coverage),
    to the last bit."""
    return fingerprints(a) == fingerprints(b)


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """`fn(*args)` and the seconds it took where it ran: wall, and CPU of the thread that ran it."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


class TimedPool(FitPool):
    """A fit pool whose batches are timed inside the worker, so `fit_all` runs unchanged: each finished
    batch adds (series, wall seconds, CPU seconds) to `batches`."""

    def __init__(self, pool: FitPool):
        self.pool = pool
        self.batches: list[tuple[int, float, float]] = []

    def executor(self) -> Any:
        return _TimedExecutor(self.pool.executor(), self.batches)

    def slots(self) -> int:
        return self.pool.slots()

    def problem(self) -> str | None:
        return self.pool.problem()

    def close(self) -> None:
        self.pool.close()


@dataclass
class _TimedExecutor:
    inner: Executor
    record: list[tuple[int, float, float]]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """`fn(*args)` run as `timed_call` on the inner executor; the returned future holds its result."""
        proxy: Future = Future()

        def settle(done: Future) -> None:
            try:
                result, wall, cpu = done.result()
            except BaseException as exc:  # noqa: BLE001 - handed on: fit_all counts the batch as lost
                proxy.set_exception(exc)
                return
            self.record.append((len(args[0]), wall, cpu))
            proxy.set_result(result)

        self.inner.submit(timed_call, fn, *args).add_done_callback(settle)
        return proxy


@dataclass
class Runs:
    """The timed rounds of one way of fitting: per round, the wall time and, per series or per batch,
    the workers' seconds (`timed_call`) and this process's CPU."""

    slots: int
    walls: list[float] = field(default_factory=list)
    per_series: list[float] = field(default_factory=list)  # worker wall seconds per series
    cpu_per_series: list[float] = field(default_factory=list)  # worker CPU seconds per series
    per_batch: list[float] = field(default_factory=list)  # slots x wall not spent fitting, per batch
    client: list[float] = field(default_factory=list)  # this process's CPU seconds per series
    batches: int = 0

    def add(self, wall: float, client_cpu: float, timed: list[tuple[int, float, float]]) -> None:
        series = sum(n for n, _, _ in timed)
        fitting = sum(w for _, w, _ in timed)
        self.walls.append(wall)
        self.per_series.append(fitting / series)
        self.cpu_per_series.append(sum(c for _, _, c in timed) / series)
        self.per_batch.append((self.slots * wall - fitting) / len(timed))
        self.client.append(client_cpu / series)
        self.batches = len(timed)

    def median(self, name: str) -> float:
        return statistics.median(getattr(self, name))


def project(series: int, workers: int, per_series: float, per_batch: float, client: float,
            batch: int = MAX_BATCH) -> tuple[float, float]:
    """Seconds to fit `series` on `workers` workers (their share of the fits and of the batches'
    overhead), and the floor set by the process that submits them and reads every result.

    >>> project(1000, 4, 0.02, 0.1, 0.001, batch=50)
    (5.5, 1.0)
    """
    return (series * per_series + math.ceil(series / batch) * per_batch) / workers, series * client


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    """Print series/s of each way of fitting, the Dask / local ratios, whether the bands agree, the
    costs per series and per batch, and the projection; 1 if a series was not fitted or bands differ."""
    from smartmetrics.app.fitstream import fit_all
    from smartmetrics.app.workers import DaskPool, LocalPool
    from smartmetrics.engine.ensemble import FitSettings
    from smartmetrics.evaluation.synth import make_corpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="local processes = Dask worker processes")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each, interleaved")
    args = parser.parse_args(argv)
    corpus = [item.series for item in make_corpus(args.series) if item.series.observed > DAY // 300]
    settings = FitSettings(horizon=DAY)
    os.environ.update(SINGLE_THREADED)  # the local pool's spawned workers inherit it, as Dask's do
    sizes = sorted({1, args.workers})
    runs = {f"{kind} x{n}": Runs(n) for n in sizes for kind in ("local", "dask")}
    results: dict[str, list] = {}
    with contextlib.ExitStack() as stack:
        pools: dict[str, TimedPool] = {}
        for n in sizes:
            address, _ = stack.enter_context(dask_cluster(n))
            pools[f"local x{n}"] = TimedPool(LocalPool(n))
            pools[f"dask x{n}"] = TimedPool(DaskPool(address))
        for pool in pools.values():
            stack.callback(pool.close)
        for pool in pools.values():  # warm: processes spawned, modules imported, connection made
            fit_all(corpus[: 2 * pool.slots()], settings, pool)
        for _ in range(args.rounds):
            for name, pool in pools.items():
                pool.batches.clear()
                start, cpu = time.perf_counter(), time.process_time()
                fitted, failures = fit_all(corpus, settings, pool)
                runs[name].add(time.perf_counter() - start, time.process_time() - cpu, list(pool.batches))
                if failures or len(fitted) != len(corpus):
                    print(f"FAILED: {name} fitted {len(fitted)} of {len(corpus)} series ({dict(failures)})")
                    return 1
                results[name] = fitted
    first, *others = results.values()
    same = all(identical(first, other) for other in others)
    _print_runs(runs, len(corpus), args.rounds, sizes)
    print(f" bands identical on all {len(corpus)} series, {len(results)} ways: {'yes' if same else 'NO'}")
    _print_projection(runs["dask x1"])
    return 0 if same else 1


def _print_runs(runs: dict[str, Runs], series: int, rounds: int, sizes: list[int]) -> None:
    rate = {name: series / r.median("walls") for name, r in runs.items()}
    print(f"{series} synthetic series, 14 days at 5m, horizon 1d; local processes and Dask workers of 1 thread; "
          f"median of {rounds} rounds, interleaved")
    print(f"{'':>10} {'series/s':>9} {'worker s/series (CPU)':>22} {'overhead s/batch (batches)':>27} "
          f"{'this process ms CPU/series':>27}   rounds")
    for name, r in runs.items():
        worker = f"{r.median('per_series'):.4f} ({r.median('cpu_per_series'):.4f})"
        batch = f"{r.median('per_batch'):.4f} ({r.batches})"
        print(f"{name:>9}: {rate[name]:9.1f} {worker:>22} {batch:>27} {1000 * r.median('client'):27.2f}   "
              + ", ".join(f"{x:.1f}s" for x in r.walls))
    print(" ratio dask / local: " + ", ".join(
        f"{rate[f'dask x{n}'] / rate[f'local x{n}']:.3f} at {n} worker{'s' if n > 1 else ''}" for n in sizes))
    if len(sizes) > 1:
        n = sizes[-1]
        print(f" dask {n} workers / 1 worker: {rate[f'dask x{n}'] / rate['dask x1']:.2f}x the throughput "
              f"(local: {rate[f'local x{n}'] / rate['local x1']:.2f}x)")


def _print_projection(dask: Runs) -> None:
    per_series, per_batch, client = dask.median("per_series"), dask.median("per_batch"), dask.median("client")
    print(f"projection, {PROJECT_SERIES:,} series of 14 days at 5m in batches of {MAX_BATCH}, from Dask at 1 worker "
          f"({per_series:.4f} s/series, {per_batch:.3f} s/batch; this process {1000 * client:.2f} ms CPU/series, "
          f"the scheduler not counted):")
    for workers in PROJECT_WORKERS:
        fits, floor = project(PROJECT_SERIES, workers, per_series, per_batch, client)
        print(f"  {workers:>3} workers: fits {_duration(fits):>8}; submitting and reading the results "
              f"{_duration(floor):>8}; the retrain {_duration(max(fits, floor)):>8}"
              f"{'  (bound by the submitting process)' if floor > fits else ''}")


if __name__ == "__main__":
    # run under the module's own name, so the functions sent to the workers pickle by reference
    from smartmetrics.benchmarks.dask_fit import main as _main

    raise SystemExit(_main())
