"""The demo's metrics, live: the synthetic series served at the current time for Prometheus to scrape.

The demo backfills 14 days that end when it starts; without new samples every series would go stale
five minutes later and no alert could fire in Prometheus. This endpoint serves the same generated
series on past the start (counters keep counting from where the backfill stopped), including an
incident a few minutes in (`demo_data.LIVE_INCIDENT`), so the user sees an alert fire live. The
backfilled series carry the job and instance labels this scrape target gives them, so Prometheus sees
one series continuing, not a new one beside the old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from smartmetrics.adapters.exporter import render_label_text
from smartmetrics.app.promlocal import MetricSeries, format_value

JOB = "inference"


class LiveMetrics:
    """Serve `series` at the current time on 127.0.0.1:`port` (`/metrics`), in a daemon thread."""

    def __init__(self, series: list[MetricSeries], port: int, clock: Callable[[], float] = time.time):
        self.series, self.port, self.clock = series, port, clock
        self._server: ThreadingHTTPServer | None = None

    def render(self, now: float) -> str:
        """The text exposition of every series' latest sample at or before `now` (none before the first)."""
        lines = []
        for m in self.series:
            i = int(np.searchsorted(m.timestamps, now, side="right")) - 1
            if i >= 0:
                lines.append(f"{m.name}{render_label_text(m.labels)} {format_value(float(m.values[i]))}\n")
        return "".join(lines)

    def start(self) -> LiveMetrics:
        live = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = live.render(live.clock()).encode() if self.path.startswith("/metrics") else b""
                self.send_response(200 if body or self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="demo-live-metrics", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
