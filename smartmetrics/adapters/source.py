"""The only Prometheus I/O: `query_range` in chunks, with retries, auth and TLS.

A baseline's history is fetched as `[align_down(end - history, step), align_down(end, step)]`, split so
that no request asks for more than `max_points_per_request` points per series (Prometheus refuses
more than 11,000) nor, over all its series, more than `max_samples_per_request` samples (the newest
piece shows how many series there are; thousands of them then arrive in short time pieces, each
well within the timeout), requested with bounded concurrency, merged, and laid on a regular grid
where anything missing, NaN or ±Inf is a NaN gap. Every failure becomes a `SourceError` naming the baseline.
The pure `parse_*` helpers live in `smartmetrics.adapters.matrix` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx

from smartmetrics import __version__
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
from smartmetrics.config import ClientTLS, Config, HTTPEndpoint, Source, redact_url
from smartmetrics.engine.series import Series, align_down

__all__ = [
    "FetchResult", "Matrix", "PrometheusClient", "RawSeries", "ResponseError", "SourceError",
    "fetch_baseline", "fetch_baseline_async", "merge_matrices", "parse_error_text", "parse_labels",
    "parse_matrix", "parse_retry_after", "render_series", "split_range",
]

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0
"""A `Retry-After` up to this many seconds is honoured as given; longer ones fall back to backoff."""

T = TypeVar("T")


class SourceError(Exception):
    """Prometheus could not give a baseline its data; the message says why and what to check."""

    def __init__(self, reason: str, baseline: str | None = None):
        self.reason = reason
        self.baseline = baseline
        super().__init__(f"baseline {baseline}: {reason}" if baseline else reason)

    def for_baseline(self, alias: str) -> SourceError:
        """The same error, attributed to baseline `alias`."""
        return SourceError(self.reason, alias)


class _Retry(Exception):
    """One attempt failed in a way worth repeating; `kind` picks the final message."""

    def __init__(self, kind: str, why: str, retry_after: float | None = None):
        super().__init__(why)
        self.kind, self.why, self.retry_after = kind, why, retry_after


@dataclass
class FetchResult:
    """A baseline's series on its grid, with what it cost to get them."""

    alias: str
    series: list[Series]
    dropped: int
    requests: int
    points: int
    seconds: float
    bytes_received: int = 0


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * 2**attempt))


def build_ssl_context(tls: ClientTLS) -> ssl.SSLContext:
    """The TLS settings of a source: CA file, skip-verify, client certificate."""
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def client_auth(endpoint: HTTPEndpoint) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """The headers (User-Agent, the endpoint's own, its bearer token) and the basic auth of requests
    to a source or a remote-write receiver."""
    headers = {"User-Agent": f"smartmetrics/{__version__}", **endpoint.headers}
    token = endpoint.resolved_bearer_token()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    auth = None
    if endpoint.basic_auth is not None:
        auth = httpx.BasicAuth(endpoint.basic_auth.username, endpoint.basic_auth.resolved_password())
    return headers, auth


def _cause(exc: BaseException, kind: type[BaseException], errno: bool = False) -> BaseException | None:
    """The first exception of type `kind` (with an errno, if asked) in the cause/context chain of `exc`."""
    seen: BaseException | None = exc
    while seen is not None and not (isinstance(seen, kind) and (not errno or getattr(seen, "errno", None))):
        seen = seen.__cause__ or seen.__context__
    return seen


def _describe_connect_error(exc: BaseException) -> str:
    """A short human reason for a failed connection (`connection refused`, `host name not found`)."""
    if (dns := _cause(exc, socket.gaierror)) is not None:
        return f"host name not found ({dns.strerror})"  # type: ignore[attr-defined]
    if isinstance(os_error := _cause(exc, OSError, errno=True), OSError) and os_error.errno:
        return os.strerror(os_error.errno).lower()
    return str(exc) or type(exc).__name__


def _tls_failure(exc: BaseException, url: str, name: str) -> SourceError | None:
    """A final `SourceError` if a connection failed in TLS (retrying cannot help), else None."""
    if (bad := _cause(exc, ssl.SSLCertVerificationError)) is not None:
        return SourceError(f"TLS verification of {url} failed: {getattr(bad, 'verify_message', bad)} "
                           f"(check sources.{name}.tls.ca_file, or set insecure_skip_verify)")
    if (bad := _cause(exc, ssl.SSLError)) is not None:
        return SourceError(f"TLS handshake with {url} failed: {getattr(bad, 'reason', None) or bad} "
                           f"(does it serve HTTPS? check sources.{name}.url and tls)")
    return None


class PrometheusClient:
    """An async client for one source, shared by all its baselines; use as `async with`."""

    def __init__(
        self,
        name: str,
        source: Source,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        rng: random.Random | None = None,
    ):
        self.name, self.source = name, source
        self.backoff, self.max_backoff = backoff, max_backoff
        self.rng = rng or random.Random()
        self.requests = 0
        self.bytes_received = 0
        self._semaphore = asyncio.Semaphore(source.concurrency)
        headers, auth = client_auth(source)
        try:
            verify = build_ssl_context(source.tls) if transport is None else True
        except (ssl.SSLError, OSError) as exc:
            raise SourceError(f"sources.{name}.tls: cannot load the CA or client certificate: {exc}") from None
        self._http = httpx.AsyncClient(
            base_url=source.url, headers=headers, auth=auth, timeout=source.timeout,
            transport=transport, verify=verify,
        )

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def query_range(
        self, expr: str, start: int, end: int, step: int,
        on_progress: Callable[[int, int], None] | None = None, max_points: int | None = None,
        into: GridSeries | None = None,
    ) -> Matrix:
        """All series of `expr` over [start, end] at `step`, fetched in chunks of at most `max_points`
        points per series (default: the source's `max_points_per_request`) and merged; or, `into` a
        `GridSeries`, each chunk placed there as it arrives (and an empty matrix returned)."""
        chunks = split_range(start, end, step, max_points or self.source.max_points_per_request)
        done = 0
        if on_progress:
            on_progress(0, len(chunks))

        async def one(lo: int, hi: int) -> Matrix:
            nonlocal done
            form = {"query": expr, "start": str(lo), "end": str(hi), "step": str(step)}
            matrix = await self._request("/api/v1/query_range", form)
            done += 1
            if on_progress:
                on_progress(done, len(chunks))
            if into is None:
                return matrix
            into.add(matrix)
            return Matrix([], [])

        return merge_matrices(await _gather_or_cancel([one(lo, hi) for lo, hi in chunks]))

    async def _request(self, path: str, form: dict[str, str]) -> Matrix:
        """POST `form` to `path`, retrying what may pass on its own; a `SourceError` otherwise."""
        attempts = self.source.retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(path, form)
            except _Retry as exc:
                last = exc
                if attempt + 1 == attempts:
                    break
                small = exc.retry_after is not None and exc.retry_after <= MAX_RETRY_AFTER
                delay = exc.retry_after if small else backoff_delay(attempt, self.backoff, self.max_backoff, self.rng)
                log.debug("source %s: %s; retrying in %.2fs", self.name, exc.why, delay)
                await asyncio.sleep(delay or 0.0)
        raise SourceError(self._exhausted_message(last, attempts))

    async def _attempt(self, path: str, form: dict[str, str]) -> Matrix:
        """One request and its parsing; raises `_Retry` for transient faults, `SourceError` for final ones."""
        url = redact_url(self.source.url)
        async with self._semaphore:
            self.requests += 1
            try:
                response = await self._http.post(path, data=form)
            except httpx.TimeoutException:
                raise _Retry("timeout", f"timed out after {self.source.timeout:g}s") from None
            except httpx.ConnectError as exc:
                if (tls_error := _tls_failure(exc, url, self.name)) is not None:
                    raise tls_error from None
                raise _Retry("connect", _describe_connect_error(exc)) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                raise _Retry("broken", f"connection broken: {exc or type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise SourceError(f"request to {url} failed: {exc or type(exc).__name__}") from None
        body = response.content
        self.bytes_received += len(body)
        status = response.status_code
        if status == 429 or status >= 500:
            why = parse_error_text(body) or f"HTTP {status}: {body[:200].decode(errors='replace').strip()}"
            raise _Retry("status", why, parse_retry_after(response.headers.get("Retry-After")))
        if status != 200:
            raise SourceError(self._status_message(status, body, path))
        try:
            return parse_matrix(body)
        except ResponseError as exc:
            if exc.retryable:
                raise _Retry("body", str(exc)) from None
            raise SourceError(f"unusable answer from {url}: {exc}") from None

    def _status_message(self, status: int, body: bytes, path: str) -> str:
        """The final message for a 4xx answer other than 429."""
        url, text = redact_url(self.source.url), body[:300].decode(errors="replace").strip()
        prom = parse_error_text(body)
        if status in (401, 403):
            return (f"{url} refused access (HTTP {status}): {text or 'no detail'}; check sources.{self.name}"
                    ".basic_auth, bearer_token and headers")
        if status == 404:
            return f"{url}{path} not found (HTTP 404); sources.{self.name}.url should be the API root, without /api/v1"
        return prom or f"{url} answered HTTP {status}: {text}"

    def _exhausted_message(self, last: _Retry, attempts: int) -> str:
        """The final message once every retry failed, with what to check."""
        url, tries = redact_url(self.source.url), f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if last.kind == "connect":
            return (f"cannot reach {url} after {tries}: {last.why} "
                    f"(check sources.{self.name}.url and that the server is running)")
        if last.kind == "timeout":
            return (f"no answer from {url} after {tries}: {last.why} "
                    f"(raise sources.{self.name}.timeout, or lower max_samples_per_request)")
        return f"{url} failed after {tries}: {last.why}"


async def _gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `coros` concurrently; on the first failure cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def fetch_baseline_async(
    client: PrometheusClient, config: Config, alias: str, end: float,
    on_progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """A baseline's history through an open client (for callers that already run an event loop)."""
    baseline = config.baselines[alias]
    step, history = int(baseline.step), int(baseline.history)
    if step != baseline.step or step < 1:
        raise SourceError(f"step {baseline.step:g}s must be a whole number of seconds", alias)
    start, stop = align_down(end - history, step), align_down(end, step)
    t0, requests0, bytes0 = time.monotonic(), client.requests, client.bytes_received
    try:
        sharding = config.sharding
        per_series = sharding.shards > 1 and sharding.by == "series"
        grid = GridSeries(start, stop, step, partial(sharding.owns, alias) if per_series else None)
        await _query_in_pieces(client, baseline.expr, grid, baseline.max_series, on_progress)
        series, dropped = grid.render(baseline.max_series)
    except SourceError as exc:
        raise exc.for_baseline(alias) from None
    except ResponseError as exc:
        raise SourceError(str(exc), alias) from None
    for warning in grid.warnings:
        log.warning("baseline %s: Prometheus warns: %s", alias, warning)
    if dropped:
        log.warning("baseline %s: expr matched %d series, over max_series=%d; keeping the first %d by labels "
                    "and dropping %d (raise baselines.%s.max_series to keep them)",
                    alias, len(series) + dropped, baseline.max_series, len(series), dropped, alias)
    return FetchResult(
        alias=alias, series=series, dropped=dropped, requests=client.requests - requests0,
        points=sum(s.observed for s in series), seconds=time.monotonic() - t0,
        bytes_received=client.bytes_received - bytes0,
    )


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
    backoff: float = 0.5,
) -> FetchResult:
    """A baseline's series over its history ending at `end` (default now); blocking, thread-safe."""
    if alias not in config.baselines:
        raise SourceError(f"not configured (configured: {', '.join(config.baselines)})", alias)
    name, source = config.source_for(alias)
    end = time.time() if end is None else end

    async def main() -> FetchResult:
        async with PrometheusClient(name, source, transport, backoff=backoff) as client:
            return await fetch_baseline_async(client, config, alias, end, on_progress)

    try:
        return run_sync(main())
    except SourceError as exc:
        raise exc if exc.baseline else exc.for_baseline(alias) from None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
