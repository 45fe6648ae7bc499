"""The retrain benchmark's bare-fetch limit (`smartmetrics.benchmarks.retrain`), in a process of its own.

    python -m smartmetrics.benchmarks.barefetch URL METRIC SERIES START END STEP PER_BATCH [--gzip]

Fetches series `0 .. SERIES-1` of `METRIC` (told apart by their `series` label) over [START, END] at
STEP: batches of PER_BATCH series by a regex on that label, 8 `query_range` requests at a time with
httpx, each answer decoded with `json.loads` and nothing else. Prints one JSON line: the samples
received, and the wall and CPU seconds of the fetch (the interpreter's start excluded).

A process of its own, importing nothing but httpx: `json.loads` creates an object per sample, and
each garbage collection it triggers rescans every object the process holds. In the benchmark's own
process the limit moved with whatever that process had imported (a third slower once pandas was
among them), which made the fraction of it a figure of the benchmark, not of the fit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def fetch(url: str, metric: str, n: int, start: int, end: int, step: int, per_batch: int,
                gzip: bool = False, concurrency: int = 8) -> int:
    """Every series in batches, `concurrency` requests at a time, JSON-decoded only (answers
    gzip-compressed if `gzip`); returns the samples received."""
    batches = [range(lo, min(n, lo + per_batch)) for lo in range(0, n, per_batch)]
    gate = asyncio.Semaphore(concurrency)
    encoding = "gzip" if gzip else "identity"
    async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Accept-Encoding": encoding}) as client:

        async def one(ids: range) -> int:
            selector = f'{metric}{{series=~"{"|".join(str(i) for i in ids)}"}}'
            async with gate:
                reply = await client.post("/api/v1/query_range", data={
                    "query": selector, "start": str(start), "end": str(end), "step": str(step)})
            reply.raise_for_status()
            if reply.headers.get("Content-Encoding", "identity") != encoding:
                raise RuntimeError(f"asked for {encoding}, Prometheus answered {reply.headers.get('Content-Encoding')}")
            result = json.loads(reply.content)["data"]["result"]
            return sum(len(s["values"]) for s in result)

        return sum(await asyncio.gather(*(one(b) for b in batches)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (7, 8) or (len(args) == 8 and args[7] != "--gzip"):
        print(__doc__, file=sys.stderr)
        return 2
    url, metric = args[0], args[1]
    n, start, end, step, per_batch = (int(a) for a in args[2:7])
    cpu, wall = time.process_time(), time.perf_counter()
    samples = asyncio.run(fetch(url, metric, n, start, end, step, per_batch, gzip=len(args) == 8))
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
