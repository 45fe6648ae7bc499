"""Server comparison: smartmetrics' own `http.server` against uvicorn with starlette, on the same store.

    pip install uvicorn starlette     # only this benchmark needs them
    python -m smartmetrics.benchmarks.servers [--series 10000] [--runs 2] [--requests 1000]

Issue 20 asks whether the hand-written server (threads on `http.server`, its own TLS and auth) should
move onto a well-kept ASGI server. Both serve the same daemon object and the same routes
(`smartmetrics.adapters.server.route`, the API one request at a time as in production); uvicorn runs them in
starlette's thread pool, so only the HTTP plumbing differs. Each run is the fault benchmark's load
row: a store of `--series` series, hundreds of idle connections held open (over TLS: connected, never
handshaking), 8 clients sending API requests, `/metrics` scraped in a loop. The table gives the
`/metrics` p99 (median over runs) and the ratio to `http.server`.

The benchmark checks itself: every scrape must carry every stored series and every API request an
answer below 500, for both servers; otherwise it exits 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from smartmetrics.benchmarks.faults import Row, load_trials

SERVE = [sys.executable, "-m", "smartmetrics.benchmarks.servers", "--serve"]


def serve_uvicorn(config_path: str) -> None:
    """Serve a config's store with uvicorn + starlette (the routes of `smartmetrics.adapters.server`)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from smartmetrics.adapters.server import route
    from smartmetrics.app.daemon import Daemon

    daemon = Daemon(config_path, workers=1)
    daemon.load()

    async def answer(request: Request) -> Response:
        reply = await run_in_threadpool(route, daemon, request.url.path, dict(request.query_params))
        return Response(reply.body, reply.status, media_type=reply.content_type)

    app = Starlette(routes=[Route("/{path:path}", answer)])
    server = daemon.config.server
    host, _, port = server.listen.rpartition(":")
    tls = server.tls
    uvicorn.run(app, host=host, port=int(port), log_level="warning", timeout_keep_alive=30,
                ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000, help="stored series (default 10,000)")
    parser.add_argument("--idle", type=int, default=300, help="idle connections held open (default 300)")
    parser.add_argument("--requests", type=int, default=1000, help="API requests per run (default 1,000)")
    parser.add_argument("--runs", type=int, default=2, help="runs per server and transport (default 2)")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)  # the uvicorn child process
    args = parser.parse_args(argv)
    if args.serve:
        serve_uvicorn(args.serve)
        return 0
    console = Console(width=120)
    servers = {"http.server (smartmetrics)": None, "uvicorn + starlette": SERVE}
    rows: dict[tuple[str, bool], list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="sm-servers-") as tmp:
        for run in range(args.runs):
            for tls in (False, True):
                for name, command in servers.items():
                    console.print(f"[dim]run {run + 1}/{args.runs}: {name}{' over TLS' if tls else ''} ...[/dim]")
                    row = load_trials(Path(tmp) / f"{run}", args.series, args.idle, args.requests, tls=tls,
                                      serve=command)
                    rows.setdefault((name, tls), []).append(row)
    table = Table(title=f"/metrics under load: {args.series:,} series, {args.idle} idle connections, "
                        f"{args.requests:,} API requests, 8 clients ({args.runs} runs)", title_justify="left")
    for column in ("server", "transport", "p99 median", "p99 max", "ratio to http.server", "requests answered"):
        table.add_column(column, justify="left" if column in ("server", "transport") else "right")
    failed = 0
    for tls in (False, True):
        base = statistics.median(r.recover[0] for r in rows[(next(iter(servers)), tls)])
        for name in servers:
            done = rows[(name, tls)]
            p99s = [r.recover[0] for r in done]
            answered = sum(r.counts["answered"] for r in done)
            failed += args.requests * len(done) - answered + sum(r.counts["scrape_failures"] for r in done)
            table.add_row(name, "TLS" if tls else "HTTP", f"{statistics.median(p99s) * 1000:.0f} ms",
                          f"{max(p99s) * 1000:.0f} ms", f"{statistics.median(p99s) / base:.2f}",
                          f"{answered:,}/{args.requests * len(done):,}")
    console.print(table)
    for (name, tls), done in rows.items():
        for r in done:
            console.print(f"  {name}{' over TLS' if tls else ''}: {r.notes[0]}")
    if failed:
        console.print(f"[red]error:[/red] {failed} requests or scrapes failed: the comparison did not measure "
                      "what it says")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
