"""What a baseline asks of its source: its history, fetched in requests that each stay small.

A baseline's history is `[align_down(end - history, step), align_down(end, step)]` on its step grid,
and no request asks for more than `max_points_per_request` points per series (Prometheus refuses more
than 11,000) nor, over all its series, more than `max_samples_per_request` samples. A range that does
not fit one request is fetched in batches of series when `expr` is a plain selector (listed first:
`smartmetrics.adapters.batches`), each batch's series handed over as soon as its whole range is in;
any other expr in time pieces over all its series (the newest piece, asked first, shows how many
there are), handed over at the end. Requests go out with bounded concurrency; series are laid on a
regular grid where anything missing, NaN or ±Inf is a NaN gap. Every failure becomes a `SourceError`
naming the baseline, except a batch's, which costs only its series (`FetchResult.failed`). The HTTP
client is `smartmetrics.adapters.client`, the pure `parse_*` helpers live in
`smartmetrics.adapters.matrix`; both are re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from smartmetrics.adapters.batches import Batched, parse_selector, query_in_batches
from smartmetrics.adapters.client import PrometheusClient, SourceError, run_sync
from smartmetrics.adapters.matrix import (
    GridSeries,
    Matrix,
    RawSeries,
    ResponseError,
    merge_matrices,
    parse_error_text,
    parse_labels,
    parse_matrix,
    parse_retry_after,
    piece_points,
    render_series,
    split_range,
)
from smartmetrics.config import Config
from smartmetrics.engine.series import Series, align_down

__all__ = [
    "FetchResult", "Matrix", "PrometheusClient", "RawSeries", "ResponseError", "SourceError",
    "fetch_baseline", "fetch_baseline_async", "merge_matrices", "parse_error_text", "parse_labels",
    "parse_matrix", "parse_retry_after", "render_series", "split_range",
]

log = logging.getLogger(__name__)


DELIVERY = 500
"""Series per call of `on_series` when a baseline's series all arrive at once (time pieces)."""


@dataclass
class FetchResult:
    """A baseline's series on its grid, with what it cost to get them; `series` holds only those not
    handed to an `on_series` callback (none, for `fetch_baseline`)."""

    alias: str
    series: list[Series]
    dropped: int
    requests: int
    points: int
    seconds: float
    bytes_received: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    """Labels of the series whose batch still failed after its retries (`adapters.batches`)."""


class _Arrivals:
    """Series as they arrive: counted, then handed to `on_series`, or kept for the result."""

    def __init__(self, on_series: Callable[[list[Series]], None] | None):
        self.on_series, self.points = on_series, 0
        self.kept: list[Series] = []

    def __call__(self, series: list[Series]) -> None:
        self.points += sum(s.observed for s in series)
        if self.on_series is None:
            self.kept += series
        else:
            self.on_series(series)


async def fetch_baseline_async(
    client: PrometheusClient, config: Config, alias: str, end: float,
    on_progress: Callable[[int, int], None] | None = None,
    on_series: Callable[[list[Series]], None] | None = None,
) -> FetchResult:
    """A baseline's history through an open client (for callers that already run an event loop); with
    `on_series`, handed to it in lists of series whose whole range has arrived (each sorted by labels)
    instead of returned, so that what is held stays bounded by a batch, not the baseline."""
    baseline = config.baselines[alias]
    step, history = int(baseline.step), int(baseline.history)
    if step != baseline.step or step < 1:
        raise SourceError(f"step {baseline.step:g}s must be a whole number of seconds", alias)
    start, stop = align_down(end - history, step), align_down(end, step)
    t0, requests0, bytes0 = time.monotonic(), client.requests, client.bytes_received
    arrived = _Arrivals(on_series)
    try:
        sharding = config.sharding
        per_series = sharding.shards > 1 and sharding.by == "series"
        grid = GridSeries(start, stop, step, partial(sharding.owns, alias) if per_series else None)
        got = await _query(client, alias, baseline.expr, grid, baseline.max_series, arrived, on_progress)
    except SourceError as exc:
        raise exc.for_baseline(alias) from None
    except ResponseError as exc:
        raise SourceError(str(exc), alias) from None
    for warning in got.warnings:
        log.warning("baseline %s: Prometheus warns: %s", alias, warning)
    if got.dropped:
        log.warning("baseline %s: expr matched %d series, over max_series=%d; keeping the first %d by labels "
                    "and dropping %d (raise baselines.%s.max_series to keep them)", alias,
                    baseline.max_series + got.dropped, baseline.max_series, baseline.max_series, got.dropped, alias)
    return FetchResult(
        alias=alias, series=sorted(arrived.kept, key=lambda s: sorted(s.labels.items())), dropped=got.dropped,
        requests=client.requests - requests0, points=arrived.points, seconds=time.monotonic() - t0,
        bytes_received=client.bytes_received - bytes0, failed=got.failed,
    )


async def _query(
    client: PrometheusClient, alias: str, expr: str, grid: GridSeries, max_series: int,
    deliver: Callable[[list[Series]], None], on_progress: Callable[[int, int], None] | None,
) -> Batched:
    """The series of `expr` on the grid's range, handed to `deliver`: in batches of series for a plain
    selector whose range does not fit one request (`adapters.batches`), else in time pieces, all
    handed over once the last piece is in."""
    source = client.source
    probe = piece_points(max_series, source.max_points_per_request, source.max_samples_per_request)
    selector = parse_selector(expr) if len(grid.timestamps) > probe else None
    if selector is not None:
        return await query_in_batches(client, alias, selector, grid, max_series, deliver, on_progress)
    await _query_in_pieces(client, expr, grid, max_series, on_progress)
    series, dropped = grid.render(max_series)
    for i in range(0, len(series), DELIVERY):
        deliver(series[i:i + DELIVERY])
    return Batched(dropped, warnings=grid.warnings)


async def _query_in_pieces(
    client: PrometheusClient, expr: str, grid: GridSeries, max_series: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """`expr` over the grid's range in requests of at most `max_samples_per_request` samples, each
    placed on the grid as it arrives.

    Until the answer is seen, the number of series is only bounded by `max_series`; so the newest
    piece is asked first at the size that bound allows, and the rest of the range in pieces sized for
    the series that piece returned. A baseline of a few series still takes one or two requests; one
    of 10,000 series arrives in short pieces that each finish well within the timeout."""
    source, start, stop, step = client.source, grid.start, grid.end, grid.step
    probe = piece_points(max_series, source.max_points_per_request, source.max_samples_per_request)
    if (stop - start) // step + 1 <= probe:
        await client.query_range(expr, start, stop, step, on_progress, probe, into=grid)
        return
    head = stop - (probe - 1) * step
    await client.query_range(expr, head, stop, step, None, probe, into=grid)
    per = piece_points(grid.seen, source.max_points_per_request, source.max_samples_per_request)
    await client.query_range(expr, start, head - step, step, on_progress, per, into=grid)


def fetch_baseline(
    config: Config,
    alias: str,
    end: float | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_series: Callable[[list[Series]], None] | None = None,
    partial: bool = False,
    backoff: float = 0.5,
) -> FetchResult:
    """A baseline's series over its history ending at `end` (default now); blocking, thread-safe.
    `on_series` is called in a thread of the fetch's (see `fetch_baseline_async`); while it has not
    returned, no more than the source's `concurrency` batches are asked for. When a batch of
    series could not be fetched, the result says which (`failed`) if the caller takes `partial`
    results or streams them (`on_series`: a retrain fits the others); anyone else gets a
    `SourceError`, as for a failed request: release markers, discovery or a chart missing some series
    without knowing it would be wrong, not short."""
    if alias not in config.baselines:
        raise SourceError(f"not configured (configured: {', '.join(config.baselines)})", alias)
    name, source = config.source_for(alias)
    end = time.time() if end is None else end

    async def main() -> FetchResult:
        async with PrometheusClient(name, source, transport, backoff=backoff) as client:
            return await fetch_baseline_async(client, config, alias, end, on_progress, on_series)

    try:
        result = run_sync(main())
    except SourceError as exc:
        raise exc if exc.baseline else exc.for_baseline(alias) from None
    if result.failed and not (partial or on_series is not None):
        raise SourceError(f"{len(result.failed)} of its series could not be fetched (see the log for why)", alias)
    return result
