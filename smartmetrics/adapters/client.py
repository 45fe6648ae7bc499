"""The HTTP client of a Prometheus source: requests with bounded concurrency, retries, auth and TLS.

Every failure becomes a `SourceError` saying what to check; what a baseline asks of it (time pieces,
series batches) is `smartmetrics.adapters.source`. Other clients (the catalog, remote write,
Alertmanager) share its headers, auth and TLS helpers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import ssl
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from smartmetrics import __version__
from smartmetrics.adapters.matrix import (
    GridSeries,
    Matrix,
    ResponseError,
    merge_matrices,
    parse_error_text,
    parse_matrix,
    parse_retry_after,
    parse_series_list,
    split_range,
)
from smartmetrics.config import ClientTLS, HTTPEndpoint, Source, redact_url

log = logging.getLogger("smartmetrics.adapters.source")  # one logger for everything a fetch says

MAX_RETRY_AFTER = 30.0
"""A `Retry-After` up to this many seconds is honoured as given; longer ones fall back to backoff."""

MAX_ANSWER_BYTES = 256 << 20
"""An answer larger than this once decoded is refused: a request for `max_samples_per_request`
samples (250,000 by default) is about 8 MB of JSON, and a few MB of gzip can decode to gigabytes."""

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


def source_auth(source: Source) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """`client_auth` for a source, with `Accept-Encoding: identity` where it is not to compress its
    answers (`Source.gzip`), unless the source's own headers say otherwise."""
    headers, auth = client_auth(source)
    if not source.gzip() and "accept-encoding" not in {key.lower() for key in headers}:
        headers["Accept-Encoding"] = "identity"  # a loopback answer costs the server's CPU, not bandwidth
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
        headers, auth = source_auth(source)
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
            matrix = await self._request("/api/v1/query_range", form, parse_matrix)
            done += 1
            if on_progress:
                on_progress(done, len(chunks))
            if into is None:
                return matrix
            into.add(matrix)
            return Matrix([], [])

        return merge_matrices(await gather_or_cancel([one(lo, hi) for lo, hi in chunks]))

    async def list_series(self, match: str, start: int, end: int) -> list[dict[str, str]]:
        """The label sets of the series the selector `match` selects with samples in [start, end]."""
        form = {"match[]": match, "start": str(start), "end": str(end)}
        listed, warnings = await self._request("/api/v1/series", form, parse_series_list)
        for warning in warnings:  # the series it leaves out are not asked for: say so
            log.warning("source %s: the series listing of %s warns: %s (a partial answer lists fewer series; "
                        "those keep their bands)", self.name, match, warning)
        return listed

    async def _request(self, path: str, form: dict[str, str], parse: Callable[[bytes], T]) -> T:
        """POST `form` to `path` and `parse` the answer, retrying what may pass on its own; a
        `SourceError` otherwise."""
        attempts = self.source.retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(path, form, parse)
            except _Retry as exc:
                last = exc
                if attempt + 1 == attempts:
                    break
                small = exc.retry_after is not None and exc.retry_after <= MAX_RETRY_AFTER
                delay = exc.retry_after if small else backoff_delay(attempt, self.backoff, self.max_backoff, self.rng)
                log.debug("source %s: %s; retrying in %.2fs", self.name, exc.why, delay)
                await asyncio.sleep(delay or 0.0)
        raise SourceError(self._exhausted_message(last, attempts))

    async def _attempt(self, path: str, form: dict[str, str], parse: Callable[[bytes], T]) -> T:
        """One request and its parsing; raises `_Retry` for transient faults, `SourceError` for final ones."""
        url = redact_url(self.source.url)
        async with self._semaphore:
            self.requests += 1
            try:
                async with asyncio.timeout(self.source.timeout):  # the whole answer, however it trickles
                    response, body = await self._post(path, form)
            except (httpx.TimeoutException, TimeoutError):
                raise _Retry("timeout", f"timed out after {self.source.timeout:g}s") from None
            except httpx.ConnectError as exc:
                if (tls_error := _tls_failure(exc, url, self.name)) is not None:
                    raise tls_error from None
                raise _Retry("connect", _describe_connect_error(exc)) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                raise _Retry("broken", f"connection broken: {exc or type(exc).__name__}") from None
            except httpx.DecodingError as exc:  # a compressed answer cut short or corrupt, or wrongly labelled
                raise _Retry("body", f"cannot decode the answer as its Content-Encoding says: {exc} (if it "
                                     f"persists, check sources.{self.name}.compression and headers)") from None
            except httpx.HTTPError as exc:
                raise SourceError(f"request to {url} failed: {exc or type(exc).__name__}") from None
        self.bytes_received += len(body)
        status = response.status_code
        if status == 429 or status >= 500:
            why = parse_error_text(body) or f"HTTP {status}: {body[:200].decode(errors='replace').strip()}"
            raise _Retry("status", why, parse_retry_after(response.headers.get("Retry-After")))
        if status != 200:
            raise SourceError(self._status_message(status, body, path))
        try:
            return parse(body)
        except ResponseError as exc:
            if exc.retryable:
                raise _Retry("body", str(exc)) from None
            raise SourceError(f"unusable answer from {url}: {exc}") from None

    async def _post(self, path: str, form: dict[str, str]) -> tuple[httpx.Response, bytes]:
        """The answer to one POST and its body, decoded, refused past `MAX_ANSWER_BYTES`."""
        async with self._http.stream("POST", path, data=form) as response:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    what = ("give the baseline a narrower expr, or split it in several" if path.endswith("/series")
                            else f"lower sources.{self.name}.max_samples_per_request")
                    raise SourceError(f"{redact_url(self.source.url)}{path} sent an answer of more than "
                                      f"{MAX_ANSWER_BYTES >> 20} MiB (decoded); {what}, or check what answers")
                chunks.append(chunk)
            return response, b"".join(chunks)

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


async def gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `coros` concurrently; on the first failure cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
