"""The `smartmetrics` command line: every user-facing message and exit code lives here.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from smartmetrics import __version__
from smartmetrics.config import Config, ConfigError, load_config, render_config
from smartmetrics.config import Server as ServerConfig
from smartmetrics.engine.series import format_labels

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("smartmetrics")


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class StderrHandler(logging.StreamHandler):
    """Log lines to `sys.stderr` as it is when each line is written, not as it was when logging was set
    up: `main` run in-process by a caller that swaps stderr (a test's capture, a notebook) keeps working
    after that stream is closed."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # noqa: ANN201 - whatever sys.stderr is
        return sys.stderr


def _print_config_error(exc: ConfigError, what: str = "invalid configuration") -> None:
    """`error: <file>: <what>` and one indented line per problem (the file named once)."""
    print(f"error: {exc.source}: {what}", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _os_error(exc: OSError, path: str | None = None) -> str:
    """`path: reason` for an OSError, the path named once (Python's own text repeats it)."""
    where = path or exc.filename
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    """Print `error: message` on stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def _load(path: str) -> Config:
    """Load a config or print every problem and exit 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        raise SystemExit(EXIT_USAGE) from None


def _sensitivity(text: str) -> str | float:
    """argparse type of `--sensitivity`: a bad value is a usage error (exit 2) listing the choices."""
    from smartmetrics.evaluation.evaluate import parse_sensitivity

    try:
        return parse_sensitivity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    """argparse type of a duration (`1h`, `1d`): a bad one is a usage error (exit 2) that shows how to write one."""
    from smartmetrics.engine.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_csv_input(path: str):
    """The series of a `timestamp,value` CSV, its repairs (sorted, duplicates, non-numbers) printed as
    warnings; a file that cannot be read is a usage error (exit 2)."""
    from smartmetrics.adapters.files import CsvError, read_csv

    try:
        reading = read_csv(path)
    except CsvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except OSError as exc:
        print(f"error: {_os_error(exc, path)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    _warn(path, reading.notes())
    return reading.series


def _warn(path: str, notes: Sequence[str]) -> None:
    for note in notes:
        print(f"warning: {path}: {note}", file=sys.stderr)


def _pick_baselines(config: Config, wanted: Sequence[str] | None) -> list[str]:
    """The baseline aliases a command works on: all, or those named, each checked to exist."""
    if not wanted:
        return list(config.baselines)
    unknown = [a for a in wanted if a not in config.baselines]
    if unknown:
        print(
            f"error: unknown baseline {', '.join(unknown)} (configured: {', '.join(config.baselines)})",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)
    return list(wanted)


# --- commands -------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"# {args.config}: valid ({len(config.sources)} sources, {len(config.baselines)} baselines)")
    print(render_config(config), end="")
    return EXIT_OK


def _daemon_client(server: ServerConfig, url: str | None = None) -> tuple[str, dict]:
    """The base URL of the daemon a config runs (or `url`) and the httpx options to reach it as its
    own config serves it: basic auth, and its TLS certificate as the CA."""
    import ssl

    if url is None:
        host, _, port = server.listen.rpartition(":")
        host = host.strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # a listen-all address: ask locally
        url = f"{'https' if server.tls else 'http'}://{host}:{port}"
    verify: ssl.SSLContext | bool = False
    if server.tls is not None:  # its own certificate is the CA; the name on it need not be 127.0.0.1
        verify = ssl.create_default_context(cafile=server.tls.cert_file)
        verify.check_hostname = False
    auth = (server.basic_auth.username, server.basic_auth.resolved_password()) if server.basic_auth else None
    return url.rstrip("/"), {"auth": auth, "verify": verify}


def cmd_health(args: argparse.Namespace) -> int:
    """Probe the running daemon's /-/healthy as its own config serves it (scheme, address, auth)."""
    import httpx

    base, options = _daemon_client(_load(args.config).server)
    url = f"{base}/-/healthy"
    try:
        response = httpx.get(url, timeout=args.timeout, **options)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILURE
    if response.status_code != 200:
        print(f"unhealthy: {url} answered HTTP {response.status_code}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"healthy: {url}")
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    config = _load(args.config)
    aliases = _pick_baselines(config, args.baseline) if args.baseline else None
    from smartmetrics.app.alerts_cli import run_alerts

    return run_alerts(config, aliases, args.since, args.match or "", args.json)


def cmd_feedback(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.url is None:
        from smartmetrics.app.alerts_cli import run_feedback_file

        return run_feedback_file(config, args.id, args.feedback)
    import httpx

    base, options = _daemon_client(config.server, args.url)
    url = f"{base}/api/v1/alerts/{args.id}/feedback"
    try:
        response = httpx.post(url, json={"feedback": args.feedback}, timeout=30, **options)
    except httpx.HTTPError as exc:
        return _fail(f"{url}: {exc or type(exc).__name__}")
    try:
        error = response.json().get("error")
    except ValueError:
        error = response.text.strip()
    if response.status_code != 200:
        return _fail(f"{url}: HTTP {response.status_code}: {error}",
                     EXIT_USAGE if response.status_code in (400, 404) else EXIT_FAILURE)
    print(f"alert {args.id}: {args.feedback}")
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    config = _load(args.config)
    aliases = _pick_baselines(config, args.baseline)
    from smartmetrics.app.fetch import run_fetch

    return run_fetch(config, aliases, args.out, end=args.end)


def cmd_fit(args: argparse.Namespace) -> int:
    config = _load(args.config).own_share()  # sharded: this daemon's baselines (its series, in the fetch)
    aliases = _pick_baselines(config, args.baseline)
    from smartmetrics.app.workers import LocalPool, pool_for

    pool = pool_for(config.cluster, args.workers, args.dask)
    try:
        if isinstance(pool, LocalPool):  # its workers import the fit machinery while this process imports its own
            pool.start()
        from smartmetrics.app.fit import run_fit
    except BaseException:  # an interrupt during the import: no worker waits for the garbage collector
        pool.close()
        raise
    return run_fit(config, aliases, pool, reclassify=args.reclassify)


def cmd_run(args: argparse.Namespace) -> int:
    _load(args.config)  # a bad config exits 2 before anything starts
    from smartmetrics.app.daemon import Daemon

    daemon = Daemon(args.config, workers=args.workers, dask=args.dask)
    try:
        daemon.start()
    except OSError as exc:
        log.error("%s", exc)
        daemon.stop()
        return EXIT_FAILURE
    daemon.run_forever()
    return EXIT_OK


def _query_series(config: Config, query: str, source: str | None, step: float, span: float):
    """The one series a PromQL query returns over the last `span` (exit 1 or 2 with the reason otherwise)."""
    from smartmetrics.adapters.source import SourceError, fetch_baseline
    from smartmetrics.config import Baseline
    from smartmetrics.engine.promql_syntax import promql_error

    problem = promql_error(query)
    if problem is not None:
        print(f"error: {query}: not valid PromQL: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    name = source or next(iter(config.sources))
    if name not in config.sources:
        print(f"error: unknown source {name} (configured: {', '.join(config.sources)})", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    baseline = Baseline(source=name, expr=query, step=step, history=span, max_series=50)
    try:
        found = fetch_baseline(config.model_copy(update={"baselines": {"backtest": baseline}}), "backtest").series
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    if len(found) != 1:
        listing = "".join(f"\n  {format_labels(s.labels)}" for s in found[:10])
        print(f"error: the query returned {len(found)} series; narrow it to one{listing}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE)
    return found[0]


def cmd_backtest(args: argparse.Namespace) -> int:
    from smartmetrics.adapters.files import read_releases
    from smartmetrics.engine.durations import parse_duration
    from smartmetrics.engine.firing import AlertRules
    from smartmetrics.evaluation.evaluate import run_backtest_series

    sensitivity = args.sensitivity
    try:
        retrain, history = int(parse_duration(args.retrain_every)), int(parse_duration(args.history))
        step, span = parse_duration(args.step), parse_duration(args.range)
        settle, follow = parse_duration(args.settle), parse_duration("0s" if args.follow == "0" else args.follow)
        releases = read_releases(args.releases) if args.releases else ()
    except OSError as exc:
        print(f"error: --releases {args.releases}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rules = AlertRules.of_sensitivity(sensitivity, for_points=args.for_points, direction=args.direction,
                                      min_abs_deviation=args.min_abs_deviation,
                                      min_rel_deviation=args.min_rel_deviation)
    options = dict(sensitivity=sensitivity, retrain_every=retrain, history=history, rules=rules,
                   releases=releases, settle=settle, absorb=args.absorb, follow=follow, follow_absorb=args.follow_absorb)
    if args.baseline and not (args.config or args.feedback):
        print("error: --baseline needs --config or --feedback", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.config:
            config = _load(args.config)
            if args.baseline:
                if args.baseline not in config.baselines:
                    print(f"error: no baseline {args.baseline!r} in {args.config} "
                          f"(known: {', '.join(sorted(config.baselines))})", file=sys.stderr)
                    return EXIT_USAGE
                chosen = config.baselines[args.baseline]
                options.update(sensitivity=chosen.sensitivity, rules=AlertRules.of_baseline(chosen))
            series = _query_series(config, args.input, args.source, step, span)
        else:
            series = _read_csv_input(args.input)
        if args.feedback:
            options["widen"] = _replay_feedback(args.feedback, series, args.baseline)
        frame = run_backtest_series(series, args.out, **options)
    except OSError as exc:
        return _fail(f"cannot write {_os_error(exc, args.out)}")
    except ValueError as exc:
        return _fail(f"{args.input}: {exc}")
    print(f"wrote {args.out}: {len(frame)} rows, {int(frame['alert'].sum())} alerts")
    return EXIT_OK


def _replay_feedback(path: str, series, baseline: str | None):
    """The feedback widening of a replay (`--feedback FILE`), told on stdout; exit 2 with the reason
    for a file that cannot be read or has no feedback on this series."""
    from smartmetrics.adapters.alert_store import AlertStoreError, load_feedback_file
    from smartmetrics.evaluation.feedback import pick_feedback

    try:
        records = load_feedback_file(path)
        chosen = pick_feedback(records, series, baseline)
    except (AlertStoreError, ValueError) as exc:
        print(f"error: --feedback {path}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    print(f"feedback: {chosen.noise} noise, {chosen.real} real on {chosen.series} of baseline {chosen.baseline}, "
          "each counted from the first retrain after it was given")
    return chosen.widen(records)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from smartmetrics.evaluation.evaluate import PEERS, Replay, run_evaluate

    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = [p for p in peers if p not in PEERS]
    if unknown or not (args.nab or args.synthetic or args.real):
        print(f"error: unknown peer {', '.join(unknown)} (known: {', '.join(PEERS)})" if unknown
              else "error: give --nab DIR, --real DIR and/or --synthetic N", file=sys.stderr)
        return EXIT_USAGE
    from pathlib import Path

    missing = [d for d in [args.nab, *args.real] if d and not (Path(d) / "combined_windows.json").is_file()]
    if missing:
        print(f"error: {missing[0]} has no combined_windows.json; give a folder in NAB layout "
              "(data/<group>/<series>.csv and combined_windows.json)", file=sys.stderr)
        return EXIT_USAGE
    replay = Replay(sensitivity=args.sensitivity, min_history=int(args.min_history))
    from smartmetrics.app.terminal import make_console

    console = make_console()
    return run_evaluate(nab=args.nab, synthetic=args.synthetic, peers=peers, replay=replay,
                        workers=args.workers, out=args.out, console=console, seed=args.seed,
                        real=tuple(args.real))


def cmd_classify(args: argparse.Namespace) -> int:
    from smartmetrics.app.classify_cli import run_classify

    if bool(args.csv) == bool(args.config):
        print("error: give either --config F or --csv FILE [FILE...]", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config) if args.config else None
    aliases = _pick_baselines(config, args.baseline) if config else []
    return run_classify(csv=args.csv, config=config, aliases=aliases, as_json=args.json, end=args.end)


def cmd_backfill(args: argparse.Namespace) -> int:
    config = _load(args.config).own_share()
    aliases = _pick_baselines(config, args.baseline)
    if args.days <= 1:
        print("error: --days must be more than 1 (the first day only trains)", file=sys.stderr)
        return EXIT_USAGE
    until = None
    if args.until is not None:
        from smartmetrics.adapters.api import parse_time

        try:
            until = parse_time(args.until, "--until")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    from smartmetrics.app.backfill import run_backfill_cli

    if args.remote_write and (config.export is None or config.export.remote_write is None):
        print("error: --remote-write needs export.remote_write in the config", file=sys.stderr)
        return EXIT_USAGE
    return run_backfill_cli(config, aliases, args.days, args.data_dir, until, args.remote_write)


def cmd_init(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from smartmetrics.adapters.source import SourceError
    from smartmetrics.config import Source

    try:
        match = re.compile(args.match) if args.match else None
        bad = [h for h in args.header if "=" not in h]
        if bad:
            return _fail(f"--header {bad[0]!r}: write NAME=VALUE", EXIT_USAGE)
        headers = dict(h.split("=", 1) for h in args.header)
        source = Source(url=args.source, headers=headers)
    except re.error as exc:
        return _fail(f"--match {args.match!r}: not a regular expression: {exc}", EXIT_USAGE)
    except ValueError as exc:  # pydantic's ValidationError, or a header without `=`
        reason = str(exc).splitlines()[-1].strip() if "validation error" in str(exc) else str(exc)
        return _fail(f"--source/--header: {reason}", EXIT_USAGE)
    out = Path(args.out)
    if args.max_baselines < 1:
        return _fail("--max-baselines must be at least 1", EXIT_USAGE)
    if out.exists() and not (args.force or args.dry_run):
        return _fail(f"{out} exists; give another --out or --force to replace it", EXIT_USAGE)
    from smartmetrics.app.init import run_init
    from smartmetrics.app.terminal import make_console

    try:
        plan = run_init(source, out, match, args.max_baselines, args.dry_run, make_console())
    except SourceError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {_os_error(exc, str(out))}")
    if not plan.proposals:
        return _fail(f"nothing worth a baseline among {plan.names} metric names "
                     f"({len(plan.skipped)} left out; --dry-run says why)")
    if not args.dry_run:
        print(f"wrote {out}: {len(plan.proposals)} baselines ({len(plan.skipped)} left out); "
              f"next: smartmetrics check-config {out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from smartmetrics.app.demo import run_demo

    return run_demo(args.out, duration=args.duration, workers=args.workers)


def _report_written(write: Callable[[], tuple[list, list[str]]], out: str) -> int:
    """Run a generator of files (rules, dashboards) and report what it wrote, or why it could not."""
    from smartmetrics.render.rules import RulesError

    try:
        paths, store_errors = write()
    except RulesError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot write to {out}: {exc.strerror}")
    for problem in store_errors:
        print(f"warning: {problem}", file=sys.stderr)
    for path in paths:
        print(f"wrote {path}")
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from smartmetrics.render.rules import write_rules

    return _report_written(lambda: write_rules(config, args.out, args.grafana_url), args.out)


def cmd_grafana(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from smartmetrics.render.grafana import write_grafana

    return _report_written(
        lambda: write_grafana(config, args.out, args.datasource_uid, args.grafana_url), args.out)


def cmd_tune(args: argparse.Namespace) -> int:
    config = _load(args.config)
    aliases = _pick_baselines(config, args.baseline)
    from smartmetrics.app.terminal import make_console
    from smartmetrics.evaluation import tune

    try:
        tune.parse_budget(args.budget)
    except ValueError as exc:
        print(f"error: --budget: {exc}", file=sys.stderr)
        return EXIT_USAGE
    console = make_console()
    try:
        return tune.run_tune(args.config, config, aliases, args.budget, write=args.write, console=console)
    except ConfigError as exc:
        _print_config_error(exc, "not written: the tuned config would not load")
        return EXIT_FAILURE
    except OSError as exc:
        return _fail(f"cannot write {_os_error(exc, args.config)}")


def cmd_plot(args: argparse.Namespace) -> int:
    from smartmetrics.adapters.files import CsvError
    from smartmetrics.adapters.source import SourceError
    from smartmetrics.app.plot_cli import plot_baseline, plot_csv
    from smartmetrics.engine.durations import parse_duration
    from smartmetrics.render.units import parse_given_unit

    try:
        last = parse_duration(args.last) if args.last else None
    except ValueError as exc:
        return _fail(f"--last: {exc}", EXIT_USAGE)
    if (args.input is None) == (args.config is None):
        return _fail("give either a CSV file or --config with --baseline", EXIT_USAGE)
    try:
        if args.input is not None:
            path, notes = plot_csv(args.input, args.out, sensitivity=args.sensitivity, last=last, title=args.title,
                                   unit=parse_given_unit(args.unit))
            _warn(args.input, notes)
            paths = [path]
        else:
            config = _load(args.config)
            alias = _pick_baselines(config, [args.baseline] if args.baseline else None)[0]
            paths = plot_baseline(config, alias, args.match, args.out, last, parse_given_unit(args.unit))
    except CsvError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # a missing input is bad usage; an unwritable --out a failure
        return _fail(_os_error(exc), EXIT_USAGE if isinstance(exc, FileNotFoundError) else EXIT_FAILURE)
    except (ValueError, SourceError) as exc:
        return _fail(str(exc))
    for path in paths:
        print(f"wrote {path}")
    return EXIT_OK if paths else EXIT_FAILURE


# --- parser ---------------------------------------------------------------------------------


def _add(
    sub: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartmetrics",
        description=(
            "Learned anomaly baselines for Prometheus and Grafana.\n\n"
            "smartmetrics reads each series' history from Prometheus, learns its normal band\n"
            "(yhat, yhat_lower, yhat_upper) for the coming day, and exports the band as metrics\n"
            "so that alerts fire only when a series leaves its own range."
        ),
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smartmetrics {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="text for people, json for one object per line (log collectors); default: text",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = _add(
        sub, "check-config", cmd_check_config, "validate a config file and print it resolved",
        "Validate a YAML config (every expr and releases.expr parsed as PromQL; durations need a unit).\n"
        "On success print it with every default filled in (secrets redacted); on failure list every\n"
        "problem by its path (a PromQL syntax error with its column) and exit 2.",
    )
    p.add_argument("config", metavar="F", help="path to the YAML config")

    p = _add(
        sub, "health", cmd_health, "probe a running daemon's /-/healthy (the Docker HEALTHCHECK)",
        "Ask the daemon configured by F for /-/healthy on its own listen address, over HTTPS with its\n"
        "own certificate when server.tls is set and with its basic-auth credentials when set. Exit 0\n"
        "when it answers 200, 1 otherwise (with the reason on stderr).",
    )
    p.add_argument("--config", required=True, metavar="F", help="the daemon's YAML config")
    p.add_argument("--timeout", type=float, default=4.0, metavar="S", help="seconds to wait (default: 4)")

    p = _add(
        sub, "fetch", cmd_fetch, "download each baseline's history to CSV files",
        "Run each baseline's expr over its history at its step against its source and write\n"
        "every series as DIR/<baseline>/<series>.csv (timestamp,value; gaps left empty) with its\n"
        "labels in DIR/<baseline>/labels.json. The CSVs are valid input to `smartmetrics backtest`.",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument(
        "--end", type=float, default=None, metavar="UNIX_SECONDS",
        help="end of the range (default: now); the range is [end - history, end]",
    )

    p = _add(
        sub, "run", cmd_run, "run the daemon: retrain on schedule, export bands on /metrics",
        "Run smartmetrics as a long-running daemon beside Prometheus. On start it serves the bands\n"
        "already in the store at once, then refits what is due; it retrains on schedule.retrain (cron),\n"
        "fits new series every schedule.discover, and exports smartmetrics_yhat, smartmetrics_yhat_lower\n"
        "and smartmetrics_yhat_upper on server.listen /metrics. Endpoints: /metrics, /-/healthy,\n"
        "/-/ready, /api/v1/baselines, /api/v1/baselines/<name>/series?match=&start=&end=.\n"
        "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the config (a bad one is rejected).",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="fit worker processes (default: CPUs)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the fits on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://sched:8786; "
                        "overrides cluster.dask)")

    p = _add(
        sub, "fit", cmd_fit, "retrain now in the foreground and print a summary",
        "Fetch each baseline's history, fit every series (classification, ensemble, calibrated band)\n"
        "and write the result to the store, as the daemon's daily retrain does, with a progress bar and\n"
        "a summary table. A running daemon picks the new bands up on SIGHUP or its next restart.\n\n"
        "Like the daily retrain, it keeps each series' curve type from its last fit (a third of a fit's\n"
        "work): each series is classified afresh once a week on a day of its own, and sooner when its\n"
        "history grew or its level moved; a changed fit config, or --reclassify, classifies them all.\n"
        "With its type a series keeps its last backtest's choice of models and calibration while its\n"
        "newest day agrees with them (most of the rest of a fit's work); the summary counts both.",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="fit worker processes (default: CPUs)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the fits on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://sched:8786; "
                        "overrides cluster.dask)")
    p.add_argument("--reclassify", action="store_true",
                   help="classify every series afresh instead of keeping the curve type of its last fit")

    p = _add(
        sub, "backtest", cmd_backtest, "walk-forward replay of one series (CSV or PromQL in, CSV out)",
        "Replay INPUT (a CSV with columns timestamp,value: NAB format or Unix seconds) walk-forward:\n"
        "every period, retrain on the trailing history only and predict the next period, then apply\n"
        "the alert logic. OUT has one row per input point: timestamp,value,yhat,yhat_lower,yhat_upper,\n"
        "anomaly_score,firing,alert (rows before the first model have empty band columns and 0/0).\n"
        "With --config, INPUT is a PromQL query returning one series, read from the config's source\n"
        "over the last --range at --step. A CSV's repairs (rows sorted, duplicate timestamps dropped,\n"
        "non-numbers read as gaps, rows off the grid) are printed as warnings; an unreadable CSV exits 2.\n\n"
        "With --releases FILE (one deploy time per line: Unix seconds or a UTC date and time), the band\n"
        "is withdrawn for --settle after each release and comes back moved to the level the series\n"
        "settled at, and each retrain re-levels its history at the releases in it, as the daemon does\n"
        "with releases.expr configured; --absorb down accepts only moves down (error rates,\n"
        "latencies), so a release that makes things worse still alerts.\n\n"
        "A series that stays beyond one edge of its band for --follow (1h) is followed there until\n"
        "the next retrain: the band also covers the new level, as the daemon's follow pass does\n"
        "(follow.after); --follow 0 turns this off, --follow-absorb down follows only moves down.\n\n"
        "With --feedback FILE (alert records with on-call's noise or real: the store's alerts.json,\n"
        "`smartmetrics alerts --json` or GET /api/v1/alerts), each retrain widens the side of the band\n"
        "that noise fell on, as the daemon's retrain does, counting only the feedback given\n"
        "before it (feedback_at; a record without it counts from its alert's start). The series is\n"
        "the file's series with the same labels (a CSV's: the file's only one; --baseline picks the\n"
        "baseline when the file has several).",
    )
    p.add_argument("input", metavar="INPUT", help="CSV file with columns timestamp,value, or a query with --config")
    p.add_argument("--config", metavar="F", help="read INPUT as a PromQL query against this config's source")
    p.add_argument("--source", metavar="NAME", help="with --config: which source (default: the first)")
    p.add_argument("--step", default="5m", metavar="D", help="with --config: query resolution (default: 5m)")
    p.add_argument("--range", default="28d", metavar="D", help="with --config: how far back to read (default: 28d)")
    p.add_argument("--sensitivity", default="medium", type=_sensitivity, metavar="S",
                   help="low|medium|high or a number in (0,1) (default: medium)")
    p.add_argument("--retrain-every", default="1d", metavar="D", help="retrain period (default: 1d)")
    p.add_argument("--history", default="14d", metavar="D", help="trailing training window (default: 14d)")
    p.add_argument("--for", dest="for_points", type=int, default=None, metavar="N",
                   help="points outside the band in a row before firing (default: the sensitivity's)")
    p.add_argument("--direction", default="both", choices=["both", "up", "down"], help="which side alerts")
    p.add_argument("--min-abs-deviation", type=float, default=0.0, metavar="X",
                   help="alert only where |value - yhat| >= X, as alert.min_abs_deviation (default: 0)")
    p.add_argument("--min-rel-deviation", type=float, default=0.0, metavar="X",
                   help="alert only where |value - yhat| >= X * |yhat|, as alert.min_rel_deviation (default: 0)")
    p.add_argument("--baseline", metavar="A",
                   help="with --config: replay with this baseline's sensitivity and alert settings, as its rules "
                        "fire; with --feedback: the feedback of this baseline")
    p.add_argument("--releases", metavar="FILE", help="deploy times, one per line: re-anchor the band after each")
    p.add_argument("--settle", default="30m", metavar="D", help="with --releases: band withdrawn this long (30m)")
    p.add_argument("--absorb", default="both", choices=["both", "up", "down"],
                   help="with --releases: which moves become the new normal (default: both)")
    p.add_argument("--follow", default="1h", metavar="D",
                   help="follow a level the series stays at this long (default: 1h; 0: never)")
    p.add_argument("--follow-absorb", default="both", choices=["both", "up", "down"],
                   help="which levels are followed (default: both)")
    p.add_argument("--feedback", metavar="FILE",
                   help="on-call's noise/real on recorded alerts (the store's alerts.json, `smartmetrics alerts "
                        "--json` or GET /api/v1/alerts): each retrain widens the band as the daemon's would, "
                        "from the feedback given before it")
    p.add_argument("--out", required=True, metavar="OUT.csv", help="where to write the replay")

    p = _add(
        sub, "evaluate", cmd_evaluate, "benchmark smartmetrics and peers on labelled data",
        "Replay smartmetrics and each peer with the same walk-forward backtest (daily retrain, 14d\n"
        "history) on a NAB-layout folder (data/*/*.csv + combined_windows.json) and/or the seeded\n"
        "synthetic corpus, and print per detector: NAB scores (standard, reward_low_FP, reward_low_FN),\n"
        "event precision/recall/F1, median time to detect, false alerts per series-day and coverage on\n"
        "clean series, band width / IQR and fit speed. Peers: prophet-bands (Prometheus Anomaly\n"
        "Detector), prophet-bands-99 (0.99 interval, 3-point for), grafana-adaptive, static-3sigma.",
    )
    p.add_argument("--nab", metavar="DIR", help="folder in NAB layout")
    p.add_argument("--real", action="append", default=[], metavar="DIR",
                   help="a real labelled corpus in NAB layout, e.g. ../shared/bench/real/asd (repeatable); "
                        "scored like NAB, with per-family tables")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="also the first N synthetic series")
    p.add_argument("--seed", type=int, default=2, metavar="S",
                   help="seed of the synthetic corpus (default: 2, a test seed; 0 and 1 are the tuning seeds, "
                        "see smartmetrics.evaluation.synth)")
    p.add_argument("--peers", default="prophet-bands,prophet-bands-99,grafana-adaptive,static-3sigma",
                   metavar="LIST", help="comma-separated peers to run beside smartmetrics")
    p.add_argument("--sensitivity", default="medium", type=_sensitivity, metavar="S",
                   help="low|medium|high or a number in (0,1) (default: medium)")
    p.add_argument("--min-history", type=_duration, default="1d", metavar="D",
                   help="a series' first band this long after its first point, as a baseline's min_history "
                        "gives it (default: 1d; under a day, refitted as its history doubles)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default: 2)")
    p.add_argument("--out", metavar="DIR", help="also write every backtest table as CSV under DIR")

    p = _add(
        sub, "classify", cmd_classify, "curve type, periods and features of each series",
        "Classify every series of the configured baselines (fetched from their sources) or of NAB-format\n"
        "CSV files as seasonal, stable, trending, intermittent, level_shift, noisy, constant or\n"
        "insufficient, with its periods (strongest first), a confidence and the features that decided it.",
    )
    p.add_argument("--config", metavar="F", help="path to the YAML config")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--csv", nargs="+", metavar="FILE", help="timestamp,value CSV files instead of a config")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--end", type=float, default=None, metavar="UNIX_SECONDS", help="end of the range (default: now)")

    p = _add(
        sub, "backfill", cmd_backfill, "write the bands over the past into a Prometheus (walk-forward replay)",
        "Replay each baseline walk-forward over the last --days of its history, exactly as `backtest`\n"
        "does (a retrain every day on the trailing history, release markers and follow honoured), and\n"
        "write smartmetrics_yhat, smartmetrics_yhat_lower and smartmetrics_yhat_upper, with the labels the\n"
        "daemon exports, into the TSDB of a Prometheus: blocks made with `promtool tsdb\n"
        "create-blocks-from openmetrics` and moved into --data-dir (that Prometheus's --storage.tsdb.path;\n"
        "a running Prometheus 2.39+ loads them within a minute). The history stops where the source\n"
        "already holds bands the daemon exported, so scraped and backfilled bands never overlap.\n"
        "Afterwards the dashboards show value and band over the past days.",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--days", type=float, default=14, metavar="N", help="how far back (default: 14)")
    into = p.add_mutually_exclusive_group(required=True)
    into.add_argument("--data-dir", metavar="DIR",
                      help="the Prometheus data directory (its --storage.tsdb.path) to add the blocks to")
    into.add_argument("--remote-write", action="store_true",
                      help="send through export.remote_write instead; the receiver must accept out-of-order "
                           "samples (Prometheus: storage.tsdb.out_of_order_time_window; Mimir: "
                           "out_of_order_time_window; VictoriaMetrics: always)")
    p.add_argument("--until", metavar="TIME", default=None,
                   help="stop the history here (Unix seconds or RFC 3339; default: where exported bands begin)")

    p = _add(
        sub, "alerts", cmd_alerts, "the alerts Alertmanager reported, with their band and feedback",
        "List the alerts of smartmetrics' rules that Alertmanager sent to the daemon's webhook\n"
        "(POST /api/v1/alerts; see configs/alertmanager.yml), newest first, from the store's alerts.json:\n"
        "when each started, its baseline and series, the value against the band at its start, how long\n"
        "it fired, on-call's feedback, and the id to give feedback on.",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--since", metavar="D", help="only alerts started since: a duration back (7d) or a time")
    p.add_argument("--match", metavar="SELECTOR", help='only alerts whose labels match, e.g. {instance="a"}')
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _add(
        sub, "feedback", cmd_feedback, "mark a recorded alert as noise or real",
        "Record on-call's word on one alert (its id from `smartmetrics alerts`). At the next retrain a\n"
        "series with `noise` on one side of its band gets that side widened, x1.25 for each, or enough\n"
        "to hold the farthest value called noise with a margin of x1.5, at most x3; a `real` alert on\n"
        "that side cancels it; `backtest --feedback` replays it. Without --url the store's alerts.json\n"
        "is written directly (while the daemon is stopped); with --url the running daemon records it\n"
        "(with the config's basic auth and TLS certificate).",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("id", metavar="ID", help="the alert's id")
    p.add_argument("feedback", choices=["noise", "real"], help="noise: should not have fired; real: should have")
    p.add_argument("--url", metavar="URL", help="the running daemon, e.g. http://127.0.0.1:9877")

    p = _add(
        sub, "init", cmd_init, "propose baselines for what a Prometheus holds and write a config",
        "Read the metric names, metadata and a sample of each metric's series from the Prometheus at\n"
        "--source, rank what is worth a baseline (error ratios, latency quantiles, request rates,\n"
        "saturation gauges; never exporter internals, info metrics or constants), build the PromQL\n"
        "(rate() for counters, histogram_quantile() for histograms, grouped by the service-, model- and\n"
        "tenant-like labels), try every expr against the source, and write a commented config.\n"
        "Presets: smartmetrics.instrument, node_exporter, kube-state-metrics, cAdvisor, NVIDIA DCGM.",
    )
    p.add_argument("--source", required=True, metavar="URL", help="the Prometheus API root, e.g. http://prom:9090")
    p.add_argument("--out", default="config.yaml", metavar="F", help="config file to write (default: config.yaml)")
    p.add_argument("--match", metavar="REGEX", help="only metric names matching REGEX (searched, not anchored)")
    p.add_argument("--max-baselines", type=int, default=20, metavar="N", help="at most N baselines (default: 20)")
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                   help="an HTTP header for the source, e.g. X-Scope-OrgID=tenant (repeatable; written to F)")
    p.add_argument("--dry-run", action="store_true", help="print what would be written and why; write nothing")
    p.add_argument("--force", action="store_true", help="replace F if it exists")

    p = _add(
        sub, "demo", cmd_demo, "the whole product on synthetic AI-serving metrics, locally",
        "Start a local Prometheus (Debian's binary) on 127.0.0.1 backfilled with 14 days of synthetic\n"
        "inference metrics (QPS, latency and confidence histograms per model and tenant, error ratios,\n"
        "GPU utilisation) with incidents in the last day; fit configs/demo.yaml against it, replay the\n"
        "last days to show the alerts that would have fired, start the daemon and let Prometheus scrape\n"
        "it. Ctrl-C stops everything; nothing is left running.",
    )
    p.add_argument("--out", default="out/demo", metavar="DIR", help="where files go (default: out/demo)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after serving this long instead of waiting for Ctrl-C")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="fit worker processes (default: CPUs)")

    p = _add(
        sub, "rules", cmd_rules, "write Prometheus recording and alerting rules",
        "Write DIR/smartmetrics.rules.yml: per baseline the recording rules smartmetrics:value and\n"
        "smartmetrics:anomaly_score and one alert honouring alert.direction, for, severity, labels and\n"
        "annotations; and DIR/smartmetrics.rules.test.yml, its `promtool test rules` cases. Value and band\n"
        "are matched on the series' own labels, read from the store (run `smartmetrics fit` first) or\n"
        "from the expr's outer `by (...)`. Same config and store, same bytes.",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument("--grafana-url", metavar="URL", help="link each alert to its Grafana dashboard panel")

    p = _add(
        sub, "grafana", cmd_grafana, "write Grafana dashboards and Grafana-managed alert rules",
        "Write DIR/dashboards/<uid>.json, one dashboard per baseline (value, yhat and the band as a filled\n"
        "area, anomaly score, a variable per series label) plus smartmetrics-fleet.json (the daemons'\n"
        "self-metrics), and DIR/alerting/smartmetrics-alerts.yml, Grafana alert rule file provisioning\n"
        "equivalent to the Prometheus alerts of `smartmetrics rules` (whose recording rules it needs).",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument("--datasource-uid", default="prometheus", metavar="UID",
                   help="uid of the Prometheus data source in Grafana (default: prometheus)")
    p.add_argument("--grafana-url", metavar="URL", help="also put an absolute panel link in each alert's annotations")

    p = _add(
        sub, "tune", cmd_tune, "recommend sensitivity and `for` per baseline for an alert budget",
        "Replay each baseline's history walk-forward (daily retrain) at several sensitivities and `for`\n"
        "durations, count the alerts the history would have raised (per series-week) and the injected\n"
        "excursions (6 residual sds, at least 10% of the level, 30 minutes, every 12 hours) that fire,\n"
        "and recommend per baseline the setting within the budget that catches most, soonest. --write puts\n"
        "sensitivity and alert.for into the config file (comments and layout kept; written atomically).",
    )
    p.add_argument("--config", required=True, metavar="F", help="path to the YAML config")
    p.add_argument("--budget", default="1/week", metavar="N/UNIT",
                   help="alerts per series allowed on history: 1/week (default), 0.5/day, ...")
    p.add_argument("--baseline", action="append", metavar="A", help="only this baseline (repeatable)")
    p.add_argument("--write", action="store_true", help="write the recommendations back into F")

    p = _add(
        sub, "plot", cmd_plot, "PNG of a series with its band, forecast and alert periods",
        "Draw a series with its band (filled), yhat and the periods its alert fired, as a PNG.\n\n"
        "  smartmetrics plot replay.csv --out replay.png        a `backtest` output, drawn as is\n"
        "  smartmetrics plot series.csv --out s.png             a timestamp,value CSV, replayed first\n"
        "  smartmetrics plot --config F --baseline A --out DIR  live series + stored forecast, one PNG each",
    )
    p.add_argument("input", nargs="?", metavar="CSV", help="backtest output or timestamp,value CSV")
    p.add_argument("--out", required=True, metavar="PATH", help="PNG file (CSV input) or folder (--config)")
    p.add_argument("--config", metavar="F", help="plot a configured baseline's live series instead")
    p.add_argument("--baseline", metavar="A", help="with --config: which baseline (default: the first)")
    p.add_argument("--match", metavar="SELECTOR", help='with --config: only series matching e.g. {model="a"}')
    p.add_argument("--sensitivity", default="medium", type=_sensitivity, metavar="S",
                   help="for replaying a plain CSV: low|medium|high or a number in (0,1) (default: medium)")
    p.add_argument("--last", metavar="DURATION",
                   help="only the last DURATION of history (and the forecast after it), e.g. 3d")
    p.add_argument("--title", help="title above the plot")
    p.add_argument("--unit", help="y-axis unit, e.g. seconds, bytes, ratio, percent or any label "
                   "(default: what the metric or file name says: _seconds, _bytes, _ratio, rate of _total)")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    if args.log_level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the rest
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
