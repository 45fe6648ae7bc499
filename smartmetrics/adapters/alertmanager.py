"""The only Alertmanager I/O: its silences (`GET /api/v2/silences`), for `feedback.silences_as_noise`.

What the answer means is `smartmetrics.engine.silences`'; here it is fetched with the endpoint's
headers, auth and TLS, and any failure (connection, status, body) is one `AlertmanagerError` that
says which URL and why.
"""

from __future__ import annotations

import ssl

import httpx

from smartmetrics.adapters.client import build_ssl_context, client_auth
from smartmetrics.config import Alertmanager, redact_url
from smartmetrics.engine.silences import Silence, parse_silences

SILENCES_PATH = "/api/v2/silences"


class AlertmanagerError(Exception):
    """Alertmanager's silences could not be read."""


def fetch_silences(endpoint: Alertmanager, transport: httpx.BaseTransport | None = None) -> list[Silence]:
    """Every silence Alertmanager knows (active, pending and those expired it still keeps)."""
    url = endpoint.url + SILENCES_PATH
    headers, auth = client_auth(endpoint)
    try:
        verify: ssl.SSLContext | bool = build_ssl_context(endpoint.tls) if transport is None else True
        with httpx.Client(headers=headers, auth=auth, timeout=endpoint.timeout, verify=verify,
                          transport=transport) as client:
            response = client.get(url)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        raise AlertmanagerError(f"{redact_url(url)}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise AlertmanagerError(f"{redact_url(url)}: HTTP {response.status_code}: {response.text[:200]}")
    try:
        return parse_silences(response.json())
    except ValueError as exc:
        raise AlertmanagerError(f"{redact_url(url)}: not a list of silences: {exc}") from None
