"""The process pool the fits run in, and the guarantees around it: no worker outlives its parent,
and a stop abandons the fits under way at once.

Workers are spawned (a fresh interpreter, no forked threads or locks) and each runs a watchdog
thread that exits the worker as soon as the process that started the pool is gone, however it
ended: a `kill -9` of the daemon leaves no worker behind (the multiprocessing resource tracker
follows, as its last client closes). `terminate` ends the workers of a pool that is being stopped,
so their running fits fail at once with `BrokenProcessPool` instead of being waited for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds between a worker's looks at its parent


def new_pool(workers: int | None) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that exit when this process does."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=watch_parent, initargs=(os.getpid(),))


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
