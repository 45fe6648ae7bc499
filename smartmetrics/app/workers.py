"""Where the fits run: a local process pool (the default) or a Dask cluster, behind one `FitPool`.

The local pool's guarantees: no worker outlives its parent, and a stop abandons the fits under way at once.

Workers are spawned (a fresh interpreter, no forked threads or locks) and each runs a watchdog
thread that exits the worker as soon as the process that started the pool is gone, however it
ended: a `kill -9` of the daemon leaves no worker behind (the multiprocessing resource tracker
follows, as its last client closes). `terminate` ends the workers of a pool that is being stopped,
so their running fits fail at once with `BrokenProcessPool` instead of being waited for.
"""

from __future__ import annotations

import importlib.metadata
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from smartmetrics import __version__

if TYPE_CHECKING:
    from smartmetrics.config import Cluster

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds between a worker's looks at its parent


def new_pool(workers: int | None) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that exit when this process does."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(os.getpid(),))


def start_worker(parent: int) -> None:
    """Pool initializer: watch the parent (`watch_parent`) and import the fit machinery now, so that a
    worker started while a baseline is fetched (`FitPool.start`) is ready when the first batch comes."""
    watch_parent(parent)
    import smartmetrics.engine.batch  # noqa: F401


def watch_parent(parent: int) -> None:
    """Pool initializer: a daemon thread that ends this worker once `parent` is no longer its parent
    (the parent died and the worker was re-parented)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL)
        os._exit(0)  # no cleanup to do: a worker holds nothing but the fit it was given

    threading.Thread(target=watch, name="smartmetrics-parent-watch", daemon=True).start()


def terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: queued fits cancelled, running ones killed with their workers."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(timeout=5)


class PoolError(Exception):
    """The fits cannot run where they were sent (e.g. no Dask scheduler); the message says what to check."""


class FitPool:
    """Where a retrain's fits run: `executor()` takes batches (`smartmetrics.engine.batch.fit_batch`),
    `slots()` says how many run at once, `problem()` a reason to give up on the fits still pending."""

    def executor(self) -> Executor:
        raise NotImplementedError

    def start(self) -> Executor:
        """The executor, its workers started now rather than at the first fit (their start-up then
        overlaps the fetch); raises `PoolError` when the fits cannot be sent anywhere."""
        return self.executor()

    def slots(self) -> int:
        raise NotImplementedError

    stopped = False  # `stop` was called: a fit it refuses is the stop's, not a fault

    def problem(self) -> str | None:
        return None

    def renew(self) -> None:
        """Replace a pool that broke (a worker died) before the next retrain."""

    def stop(self) -> None:
        """Abandon the fits under way for good (the daemon stops); a retrain still running ends at
        its next fit, quietly."""
        self.stopped = True
        self.terminate()

    def terminate(self) -> None:
        """Abandon the fits under way now."""

    def close(self) -> None:
        """Release the pool once no more fits will be sent."""


class LocalPool(FitPool):
    """Spawned worker processes on this machine (`new_pool`), created on first use."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = new_pool(self.workers)
        return self._executor

    def start(self) -> ProcessPoolExecutor:
        executor = self.executor()
        try:
            for _ in range(self.workers):  # spawned processes start on demand, one per task while none is idle
                executor.submit(os.getpid)
        except RuntimeError as exc:  # a broken pool: its fits fail as lost batches, and the daemon renews it
            log.debug("the fit pool could not start its workers: %s", exc)
        return executor

    def slots(self) -> int:
        return self.workers

    def renew(self) -> None:
        self.terminate()

    def terminate(self) -> None:
        if self._executor is not None:
            terminate(self._executor)
            self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


class DaskPool(FitPool):
    """The workers of a `dask.distributed` cluster, reached through its scheduler at `address`.

    The connection is made on first use (and again after it was lost), so a daemon whose scheduler is
    down still serves its stored bands and says why each retrain failed. The workers must run the same
    smartmetrics version as this process: the same code gives the same bands, to the last bit. Dask
    reruns the batches of a worker that died on the others; a scheduler that is gone, or a cluster left
    without workers for `NO_WORKERS_GRACE` seconds, ends the wait instead of hanging the retrain."""

    NO_WORKERS_GRACE = 60.0

    def __init__(self, address: str, timeout: float = 30.0):
        self.address, self.timeout = address, timeout
        self._client: Any = None
        self._executor: Executor | None = None
        self._workers_seen = time.monotonic()

    def _connect(self) -> Any:
        try:
            from distributed import Client
        except ImportError:
            raise PoolError("cluster.dask is set but dask.distributed is not installed "
                            "(pip install 'smartmetrics[dask]')") from None
        try:
            client = Client(self.address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise PoolError(f"cannot reach the Dask scheduler at {self.address} within {self.timeout:g}s: "
                            f"{exc} (check cluster.dask and that `dask scheduler` is running)") from None
        try:
            versions = client.run(importlib.metadata.version, "smartmetrics")
        except Exception as exc:  # noqa: BLE001 - whatever a worker raised, it cannot fit
            client.close()
            raise PoolError(f"the Dask workers at {self.address} cannot import smartmetrics ({exc}); "
                            "install the same smartmetrics version on every worker") from None
        wrong = {w: v for w, v in versions.items() if v != __version__}
        if wrong:
            client.close()
            raise PoolError(f"Dask workers run other smartmetrics versions than {__version__}: {wrong}; "
                            "install the same version everywhere (the same code gives the same bands)")
        log.info("fits run on the Dask cluster at %s (%d workers)", self.address, len(versions))
        return client

    def executor(self) -> Executor:
        if self._client is None or self._client.status not in ("running", "connecting"):
            self.close()
            self._client = self._connect()
            self._executor = self._client.get_executor(pure=False)
            self._workers_seen = time.monotonic()
        assert self._executor is not None
        return self._executor

    def slots(self) -> int:
        if self._client is None:
            return 1
        workers = self._client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def problem(self) -> str | None:
        if self._client is None or self._client.status != "running":
            return f"lost the Dask scheduler at {self.address}"
        if self._client.scheduler_info().get("workers"):
            self._workers_seen = time.monotonic()
        elif time.monotonic() - self._workers_seen > self.NO_WORKERS_GRACE:
            return f"the Dask cluster at {self.address} has had no workers for {self.NO_WORKERS_GRACE:g}s"
        return None

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)  # cancels what is queued or running on the cluster
        self.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close(timeout=5)
            except Exception as exc:  # noqa: BLE001 - closing a dead connection may raise; nothing is lost
                log.debug("closing the Dask client: %s", exc)
        self._client, self._executor = None, None


def open_pool(workers: int, dask: str | None = None, timeout: float = 30.0) -> FitPool:
    """The fit pool: a Dask cluster when `dask` names its scheduler, else `workers` local processes."""
    return DaskPool(dask, timeout) if dask else LocalPool(workers)


def pool_for(cluster: Cluster, workers: int | None = None, dask: str | None = None) -> FitPool:
    """The fit pool a config's `cluster` section asks for: the Dask scheduler at `dask` (else
    `cluster.dask`) if any, else `workers` local processes (default: one per CPU)."""
    return open_pool(workers or os.cpu_count() or 1, dask or cluster.dask, cluster.timeout)
