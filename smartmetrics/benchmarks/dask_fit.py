"""Fits on a Dask cluster beside the local process pool: the same series, the same bands, the time.

Starts a real `dask scheduler` and `dask worker` processes on this machine, fits one synthetic corpus
(14 days at 5 minutes) through `app.retrain.fit_all` on the local pool and on the cluster, in turns,
checks that every series was fitted on both and that the bands are identical to the last bit, and
prints the throughput of each and their ratio. Exits non-zero if any check fails.

    python -m smartmetrics.benchmarks.dask_fit [--series 300] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from smartmetrics.app.promlocal import free_port

DAY = 86400
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_ENV = {
    **SINGLE_THREADED,
    # the worker's statistical profiler samples every thread's stack every 10 ms, holding the GIL
    # the fits need; deploy/kubernetes/dask.yaml turns it off too
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
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
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **WORKER_ENV}
    logs = tempfile.TemporaryDirectory(prefix="smartmetrics-dask-")
    started: list[subprocess.Popen] = []

    def spawn(args: list[str], name: str) -> subprocess.Popen:
        out = open(Path(logs.name) / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(_dask_command() + args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append(proc)
        return proc

    try:
        spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler")
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


def main(argv: list[str] | None = None) -> int:
    """Print series/s on the local pool and on the cluster, their ratio, and whether the bands agree."""
    from smartmetrics.app.retrain import fit_all
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
    times: dict[str, list[float]] = {"local": [], "dask": []}
    results: dict[str, list] = {}
    with dask_cluster(args.workers) as (address, _):
        pools = {"local": LocalPool(args.workers), "dask": DaskPool(address)}
        try:
            for pool in pools.values():  # warm: processes spawned, modules imported, connection made
                fit_all(corpus[: 2 * args.workers], settings, pool)
            for _ in range(args.rounds):
                for name, pool in pools.items():
                    start = time.perf_counter()
                    fitted, failures = fit_all(corpus, settings, pool)
                    times[name].append(time.perf_counter() - start)
                    if failures or len(fitted) != len(corpus):
                        print(f"FAILED: {name} fitted {len(fitted)} of {len(corpus)} series ({dict(failures)})")
                        return 1
                    results[name] = fitted
        finally:
            for pool in pools.values():
                pool.close()
    same = identical(results["local"], results["dask"])
    rate = {name: len(corpus) / statistics.median(t) for name, t in times.items()}
    print(f"{len(corpus)} synthetic series, 14 days at 5m, horizon 1d; {args.workers} local processes vs "
          f"{args.workers} Dask workers (1 thread each); median of {args.rounds} rounds")
    for name, t in times.items():
        print(f"{name:>6}: {rate[name]:7.1f} series/s  (rounds: {', '.join(f'{x:.1f}s' for x in t)})")
    print(f" ratio dask / local: {rate['dask'] / rate['local']:.3f}")
    print(f" bands identical on all {len(corpus)} series: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
