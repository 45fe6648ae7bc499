"""The daemon's HTTP server: routes, basic auth and TLS, with a stand-in for the daemon."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from smartmetrics.adapters.server import MAX_BODY, Response, route, route_post, serve
from smartmetrics.app.promlocal import free_port
from smartmetrics.config import BasicAuth, Server, ServerTLS


class FakeApp:
    ready = False

    def is_ready(self) -> bool:
        return self.ready

    def metrics_text(self) -> bytes:
        return b"x 1\n"

    def baselines_json(self) -> dict:
        return {"status": "success", "data": []}

    def series_json(self, alias: str, query: dict[str, str]) -> tuple[int, dict]:
        return (200, {"data": [], "alias": alias, "q": query})

    rejected: list[str] = []

    def alerts_json(self, query: dict[str, str]) -> tuple[int, dict]:
        return (200, {"data": [], "q": query})

    def receive_alerts(self, body: bytes) -> tuple[int, dict]:
        return (200, {"got": body.decode()})

    def alert_feedback(self, alert_id: str, body: bytes) -> tuple[int, dict]:
        return (200, {"id": alert_id, "got": body.decode()})

    def payload_rejected(self, reason: str) -> None:
        self.rejected.append(reason)


@contextmanager
def running(config: Server) -> Iterator[str]:
    server = serve(FakeApp(), config)
    try:
        yield f"{server.scheme}://127.0.0.1:{server.address[1]}"
    finally:
        server.stop()


def test_routes() -> None:
    app = FakeApp()
    assert route(app, "/-/healthy", {}).status == 200
    assert route(app, "/-/ready", {}).status == 503
    app.ready = True
    assert route(app, "/-/ready", {}).status == 200
    assert route(app, "/metrics", {}) == Response(200, b"x 1\n", "text/plain; version=0.0.4; charset=utf-8")
    series = route(app, "/api/v1/baselines/my%20qps/series", {"match": '{a="b"}'})
    assert series.status == 200 and b'"alias": "my qps"' in series.body
    assert route(app, "/api/v1/nothing", {}).status == 404


def test_basic_auth_guards_every_endpoint() -> None:
    config = Server(listen=f"127.0.0.1:{free_port()}", basic_auth=BasicAuth(username="prom", password="s3cret"))
    with running(config) as url:
        denied = httpx.get(f"{url}/metrics")
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert httpx.get(f"{url}/metrics", auth=("prom", "wrong")).status_code == 401
        ok = httpx.get(f"{url}/metrics", auth=("prom", "s3cret"))
        assert ok.status_code == 200 and ok.text == "x 1\n"


def test_tls(self_signed_cert: tuple[Path, Path]) -> None:
    cert, key = self_signed_cert
    config = Server(listen=f"127.0.0.1:{free_port()}", tls=ServerTLS(cert_file=str(cert), key_file=str(key)))
    with running(config) as url:
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{url}/-/healthy", verify=trusted).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/-/healthy")  # not trusted without the CA


def test_odd_authorization_headers_are_refused_not_dropped() -> None:
    config = Server(listen=f"127.0.0.1:{free_port()}", basic_auth=BasicAuth(username="prom", password="s3cret"))
    with running(config) as url:
        for value in ("Basic \u00e9t\u00e9", "Bearer \u00ff" * 50, "", "Basic " + "A" * 10_000):
            response = httpx.get(f"{url}/metrics", headers={"Authorization": value.encode("latin-1", "replace")})
            assert response.status_code == 401  # before: a non-ASCII header dropped the connection
        assert httpx.get(f"{url}/metrics", auth=("prom", "s3cret")).status_code == 200


def test_an_idle_connection_does_not_stall_https(self_signed_cert: tuple[Path, Path]) -> None:
    cert, key = self_signed_cert
    config = Server(listen=f"127.0.0.1:{free_port()}", tls=ServerTLS(cert_file=str(cert), key_file=str(key)))
    with running(config) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]  # connect, never handshake
        try:
            trusted = ssl.create_default_context(cafile=str(cert))
            started = time.monotonic()
            assert httpx.get(f"{url}/metrics", verify=trusted, timeout=5).status_code == 200
            assert time.monotonic() - started < 2
        finally:
            for conn in idle:
                conn.close()


def test_port_in_use_names_the_address() -> None:
    config = Server(listen=f"127.0.0.1:{free_port()}")
    with running(config), pytest.raises(OSError, match=f"cannot listen on {config.listen}"):
        serve(FakeApp(), config)


def test_health_command_probes_as_the_config_serves(self_signed_cert: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    import yaml

    from smartmetrics.app.cli import main

    cert, key = self_signed_cert
    port = free_port()
    server = {"listen": f"0.0.0.0:{port}", "tls": {"cert_file": str(cert), "key_file": str(key)},
              "basic_auth": {"username": "prom", "password": "s3cret"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"sources": {"p": {"url": "http://127.0.0.1:9"}},
                                    "baselines": {"q": {"expr": "up"}}, "server": server}))
    config = Server(listen=f"127.0.0.1:{port}", tls=ServerTLS(cert_file=str(cert), key_file=str(key)),
                    basic_auth=BasicAuth(username="prom", password="s3cret"))
    with running(config):
        assert main(["health", "--config", str(path)]) == 0  # HTTPS with its own cert, with the credentials
    assert "healthy: https://127.0.0.1" in capsys.readouterr().out
    assert main(["health", "--config", str(path), "--timeout", "1"]) == 1  # nothing listening any more
    assert "unhealthy" in capsys.readouterr().err


def test_post_routes() -> None:
    app = FakeApp()
    assert route_post(app, "/api/v1/alerts", b"{}").body == b'{"got": "{}"}'
    feedback = route_post(app, "/api/v1/alerts/ab%20c/feedback", b"x")
    assert feedback.status == 200 and b'"id": "ab c"' in feedback.body
    assert route_post(app, "/api/v1/baselines", b"").status == 404
    assert route_post(app, "/metrics", b"").status == 405
    assert route(app, "/api/v1/alerts", {"baseline": "q"}).status == 200


def test_posts_honour_basic_auth_and_a_body_cap() -> None:
    config = Server(listen=f"127.0.0.1:{free_port()}", basic_auth=BasicAuth(username="prom", password="s3cret"))
    with running(config) as url:
        assert httpx.post(f"{url}/api/v1/alerts", content=b"{}").status_code == 401
        ok = httpx.post(f"{url}/api/v1/alerts", content=b"{}", auth=("prom", "s3cret"))
        assert ok.status_code == 200 and ok.json() == {"got": "{}"}
        big = httpx.post(f"{url}/api/v1/alerts", content=b"x" * (MAX_BODY + 1), auth=("prom", "s3cret"))
        assert big.status_code == 413 and "at most" in big.json()["error"]
        assert FakeApp.rejected[-1] == "too_large"
