"""The daemon's HTTP server: /metrics, /-/healthy, /-/ready and the JSON API, on its own threads.

It only reads: every request works on the current immutable snapshot, so scrapes never wait for a
fit. Optional basic auth and TLS come from the `server` section of the config.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from smartmetrics.config import Server as ServerConfig

log = logging.getLogger(__name__)

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
CLIENT_TIMEOUT = 30.0  # seconds a connection may stay silent
API_CONCURRENCY = 1  # API requests rendered at once; /metrics, health and readiness never wait for them
API_WAIT = 20.0  # seconds an API request may queue before it is told to retry (503)
MAX_BODY = 4 << 20  # bytes of a POST body (an Alertmanager webhook of a few thousand alerts fits)
_api_slots = threading.BoundedSemaphore(API_CONCURRENCY)


class App(Protocol):
    """What the server asks of the daemon."""

    def is_ready(self) -> bool: ...
    def metrics_text(self) -> bytes: ...
    def baselines_json(self) -> dict[str, Any]: ...
    def series_json(self, alias: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]: ...
    def alerts_json(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]: ...
    def receive_alerts(self, body: bytes) -> tuple[int, dict[str, Any]]: ...
    def alert_feedback(self, alert_id: str, body: bytes) -> tuple[int, dict[str, Any]]: ...
    def payload_rejected(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(status: int, doc: dict[str, Any]) -> Response:
    return Response(status, json.dumps(doc, allow_nan=False).encode())


def route(app: App, path: str, query: dict[str, str]) -> Response:
    """The response for one GET, independent of HTTP plumbing (tested directly)."""
    if path == "/metrics":
        return Response(200, app.metrics_text(), TEXT_FORMAT)
    if path == "/-/healthy":
        return Response(200, b"smartmetrics is healthy.\n", "text/plain")
    if path == "/-/ready":
        if app.is_ready():
            return Response(200, b"smartmetrics is ready.\n", "text/plain")
        return Response(503, b"smartmetrics is loading its baselines.\n", "text/plain")
    if path.startswith("/api/"):
        return _api(app, path, query)
    if path == "/":
        links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in ("/metrics", "/-/ready", "/api/v1/baselines"))
        return Response(200, f"<html><body><h1>smartmetrics</h1><ul>{links}</ul></body></html>".encode(), "text/html")
    return _json(404, {"status": "error", "error": f"no such endpoint: {path}"})


def _api(app: App, path: str, query: dict[str, str]) -> Response:
    """The JSON API, one request at a time (`API_CONCURRENCY`): rendering a chart for thousands of
    series holds the interpreter, and a scrape of `/metrics` must never wait behind many of them."""
    if not _api_slots.acquire(timeout=API_WAIT):
        return _json(503, {"status": "error", "error": f"busy: the API answers {API_CONCURRENCY} request(s) at a "
                                                        "time and none finished in time; retry"})
    try:
        if path == "/api/v1/baselines":
            return _json(200, app.baselines_json())
        if path == "/api/v1/alerts":
            return _json(*app.alerts_json(query))
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "baselines"] and parts[4] == "series":
            status, doc = app.series_json(unquote(parts[3]), query)
            return _json(status, doc)
        return _json(404, {"status": "error", "error": f"no such endpoint: {path}"})
    finally:
        _api_slots.release()


def route_post(app: App, path: str, body: bytes) -> Response:
    """The response for one POST: the Alertmanager webhook and feedback on a recorded alert."""
    if path == "/api/v1/alerts":
        return _json(*app.receive_alerts(body))
    parts = path.strip("/").split("/")
    if len(parts) == 5 and parts[:3] == ["api", "v1", "alerts"] and parts[4] == "feedback":
        return _json(*app.alert_feedback(unquote(parts[3]), body))
    return _json(404 if path.startswith("/api/") else 405,
                 {"status": "error", "error": f"no POST endpoint at {path} (POST /api/v1/alerts, "
                                             "/api/v1/alerts/<id>/feedback)"})


def _body_problem(length: str | None) -> Response | None:
    """Why a POST's Content-Length rules out reading its body (None if it does not)."""
    if length is None:
        return _json(411, {"status": "error", "error": "a Content-Length is required"})
    if not length.isdigit():
        return _json(400, {"status": "error", "error": f"bad Content-Length {length!r}"})
    if int(length) > MAX_BODY:
        return _json(413, {"status": "error", "error": f"the body is {length} bytes; at most {MAX_BODY}"})
    return None


def _handler(app: App, auth: tuple[str, str] | None) -> type[BaseHTTPRequestHandler]:
    expected = None if auth is None else b"Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode())

    class Handler(BaseHTTPRequestHandler):
        server_version = "smartmetrics"
        timeout = CLIENT_TIMEOUT  # a client that stays silent (or never finishes a TLS handshake) is dropped

        def setup(self) -> None:
            super().setup()  # the socket timeout is set: the TLS handshake happens here, in this request's thread
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def handle(self) -> None:
            try:
                super().handle()
            except (OSError, ssl.SSLError) as exc:  # a client that went away, timed out or spoke no TLS
                log.debug("connection from %s ended: %s", self.address_string(), exc)

        def _authorised(self) -> bool:
            """Whether the request carries the configured credentials (answered 401 if not)."""
            given = self.headers.get("Authorization", "").encode("latin-1", errors="replace")  # as it came
            if expected is not None and not hmac.compare_digest(given, expected):
                self._send(Response(401, b"authentication required\n", "text/plain"),
                           {"WWW-Authenticate": 'Basic realm="smartmetrics"'})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self._authorised():
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                self._answer(lambda: route(app, url.path, query))

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            problem = _body_problem(self.headers.get("Content-Length"))
            if problem is not None:
                if problem.status == 413:
                    app.payload_rejected("too_large")
                self.close_connection = True  # the unread body must not be taken for the next request
                self._send(problem)
                return
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(lambda: route_post(app, urlsplit(self.path).path, body))

        def _answer(self, respond: Any) -> None:
            try:
                response = respond()
            except Exception:
                log.exception("error serving %s %s", self.command, self.path)
                response = _json(500, {"status": "error", "error": "internal error, see the daemon's log"})
            self._send(response)

        def _send(self, response: Response, headers: dict[str, str] | None = None) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

    return Handler


class HTTPServer:
    """A threading HTTP server bound to `listen`, run in a daemon thread."""

    def __init__(self, app: App, config: ServerConfig):
        host, _, port = config.listen.rpartition(":")
        auth = None
        if config.basic_auth is not None:
            auth = (config.basic_auth.username, config.basic_auth.resolved_password())
        self._httpd = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), _handler(app, auth))
        self._httpd.daemon_threads = True
        if config.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(config.tls.cert_file, config.tls.key_file)
            # no handshake in accept(): one client that never speaks would stall every other
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self.scheme = "https" if config.tls is not None else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._httpd.server_address[:2]  # type: ignore[return-value]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve(app: App, config: ServerConfig) -> HTTPServer:
    """Bind and start the server; a port in use raises OSError with the address in the message."""
    try:
        server = HTTPServer(app, config)
    except OSError as exc:
        raise OSError(f"cannot listen on {config.listen}: {exc.strerror}") from None
    server.start()
    return server
