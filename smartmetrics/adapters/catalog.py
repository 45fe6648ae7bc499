"""What a Prometheus holds, for `smartmetrics init`: metric names, their metadata, a sample of each
metric's series, and instant queries to try a proposed expr.

Blocking httpx with the same headers, auth and TLS as `PrometheusClient` (`source_auth`,
`build_ssl_context`); every failure is a `SourceError` saying what to check.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx

from smartmetrics.adapters.client import (
    SourceError,
    _describe_connect_error,
    _tls_failure,
    build_ssl_context,
    source_auth,
)
from smartmetrics.adapters.matrix import parse_error_text
from smartmetrics.config import Source, redact_url

SAMPLE_WINDOW = 3600.0
"""Series seen in the last hour are the sample of a metric's labels."""


class Catalog:
    """A blocking client for the metadata and series endpoints of one source; use as `with`."""

    def __init__(self, source: Source, name: str = "prometheus", transport: httpx.BaseTransport | None = None):
        self.source, self.name = source, name
        headers, auth = source_auth(source)
        try:
            verify: ssl.SSLContext | bool = build_ssl_context(source.tls) if transport is None else True
        except (ssl.SSLError, OSError) as exc:
            raise SourceError(f"cannot load the CA or client certificate: {exc}") from None
        self._http = httpx.Client(base_url=source.url, headers=headers, auth=auth, timeout=source.timeout,
                                  verify=verify, transport=transport)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        """The `data` of a successful API answer, or a `SourceError`."""
        url = redact_url(self.source.url)
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException:
            raise SourceError(f"no answer from {url} within {self.source.timeout:g}s") from None
        except httpx.ConnectError as exc:
            if (tls := _tls_failure(exc, url, self.name)) is not None:
                raise tls from None
            raise SourceError(f"cannot reach {url}: {_describe_connect_error(exc)} "
                              "(check the URL and that Prometheus is running)") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"request to {url} failed: {exc or type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise SourceError(f"{url} refused access (HTTP {response.status_code}); check the credentials")
        if response.status_code == 404:
            raise SourceError(f"{url}{path} not found (HTTP 404); give the API root, without /api/v1")
        try:
            doc = response.json()
        except ValueError:
            raise SourceError(f"{url}{path} answered HTTP {response.status_code} with no JSON; is it Prometheus?") \
                from None
        if response.status_code != 200 or doc.get("status") != "success":
            raise SourceError(parse_error_text(doc) or f"{url}{path} answered HTTP {response.status_code}")
        return doc.get("data")

    def fetch_names(self) -> list[str]:
        """Every metric name the source holds, sorted."""
        return sorted(str(n) for n in self._get("/api/v1/label/__name__/values", {}) or [])

    def fetch_metadata(self) -> dict[str, str]:
        """Metric name -> type (`counter`, `gauge`, `histogram`, `summary`, ...) from the scrape
        targets' metadata; empty for data that was never scraped (backfilled, remote-written)."""
        data = self._get("/api/v1/metadata", {}) or {}
        return {str(name): str(entries[0].get("type", "unknown")) for name, entries in data.items() if entries}

    def fetch_series(self, name: str, limit: int = 500, now: float | None = None) -> list[dict[str, str]]:
        """Up to `limit` label sets of `name`'s series seen in the last hour (without `__name__`)."""
        now = time.time() if now is None else now
        params = {"match[]": name, "start": f"{now - SAMPLE_WINDOW:.0f}", "end": f"{now:.0f}", "limit": str(limit)}
        found = self._get("/api/v1/series", params) or []
        return [{k: v for k, v in s.items() if k != "__name__"} for s in found[:limit]]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now (each item's `metric` and `value`)."""
        data = self._get("/api/v1/query", {"query": expr}) or {}
        result = data.get("result", [])
        return result if data.get("resultType") == "vector" else []
