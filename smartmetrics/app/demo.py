"""`smartmetrics demo`: the whole product on one machine, on synthetic AI-serving metrics.

A local Prometheus is backfilled with 14 days of inference metrics (incidents in the last day),
`configs/demo.yaml` is pointed at it, every baseline is fitted, the last days are replayed
walk-forward to show the alerts that would have fired, and the daemon is started for Prometheus to
scrape. Everything runs on 127.0.0.1 and stops on Ctrl-C (or after `--duration`), leaving nothing
running.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from smartmetrics.adapters.markers import series_releases
from smartmetrics.adapters.source import SourceError, fetch_baseline
from smartmetrics.adapters.store import load_store, write_atomic
from smartmetrics.app.backfill import replay, run_backfill
from smartmetrics.app.demo_data import DEMO_INCIDENTS, LIVE_INCIDENT, generate_demo_metrics, until
from smartmetrics.app.demo_live import JOB, LiveMetrics
from smartmetrics.app.fit import run_fit
from smartmetrics.app.promlocal import LocalPrometheus, held_port
from smartmetrics.app.terminal import make_console
from smartmetrics.app.workers import pool_for
from smartmetrics.config import Config, load_config, parse_config
from smartmetrics.engine.series import Series, align_down, format_labels
from smartmetrics.render.plots import plot_band

log = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
REPLAY_DAYS = 3
LIVE_HOURS = 6  # the live series go on this long after the start, then stop (stale in Prometheus)
DEMO_STEP = 120  # seconds between generated samples: half the text promtool parses of a 60 s step, the same bands
DEMO_OUTPUTS = ("prometheus", "models", "replay", "plots", "rules", "grafana", "config.yaml")


def demo_config(template: Path, prom_url: str, out: Path, port: int) -> Path:
    """The demo config: the template pointed at the local Prometheus, with its store and port under `out`."""
    data = yaml.safe_load(template.read_text())
    data["sources"] = {"prometheus": {**next(iter(data["sources"].values())), "url": prom_url}}
    data["store"] = {"path": str(out / "models")}
    data["server"] = {"listen": f"127.0.0.1:{port}"}
    parse_config(data, str(template))  # fail here, with the template's name, if it is broken
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def replay_recent(config: Config, alias: str, series: Series, releases: tuple[int, ...] = ()) -> pd.DataFrame:
    """Walk-forward replay of the last `REPLAY_DAYS` days, as the daemon would have lived them."""
    start = series.end - REPLAY_DAYS * 86400 - int(config.baselines[alias].history)
    keep = series.timestamps >= start
    recent = Series(series.labels, series.timestamps[keep], series.values[keep], series.step, series.name)
    return replay(config, alias, recent, releases,
                  min_history=max(86400, int(recent.end - recent.start) - REPLAY_DAYS * 86400 + 1))


def summarize(config: Config, out: Path) -> Table:
    """Replay every series of every baseline and tabulate alerts and coverage; write the CSVs."""
    table = Table(title=f"what the bands did over the last {REPLAY_DAYS} days (walk-forward replay)")
    for col in ("baseline", "series", "curve types", "coverage", "alerts fired (series: UTC start)"):
        table.add_column(col, justify="right" if col in ("series", "coverage") else "left")
    states, _ = load_store(config.store.path)
    index: list[dict[str, object]] = []
    for alias in config.baselines:
        result = fetch_baseline(config, alias)
        end = max((s.end for s in result.series), default=0)
        try:
            releases = series_releases(config, alias, result.series, end - config.baselines[alias].history, end + 1)
        except SourceError as exc:
            log.warning("%s: release markers: %s; replayed without them", alias, exc)
            releases = {}
        stored = {b.key: b.meta.get("curve_type", "?") for b in states[alias].series} if alias in states else {}
        alerts, inside, curves = [], [], Counter()
        pictured: tuple[int, pd.DataFrame, Series] | None = None
        for series in result.series:
            frame = replay_recent(config, alias, series, releases.get(series.key, ()))
            name = replay_file_name(alias, series.labels)
            write_csv_atomic(frame, out / "replay" / name)
            index.append({"file": name, "baseline": alias, "labels": format_labels(series.labels),
                          "alerts": int(frame.alert.sum())})
            if pictured is None or int(frame.alert.sum()) > pictured[0]:
                pictured = (int(frame.alert.sum()), frame, series)
            banded = frame.dropna(subset=["yhat_lower", "value"])
            inside.append(float(((banded.value >= banded.yhat_lower) & (banded.value <= banded.yhat_upper)).mean()))
            for ts in frame.timestamp[frame.alert == 1]:
                when = pd.Timestamp(int(ts), unit="s").strftime("%a %H:%M")
                alerts.append(f"{format_labels(series.labels)}: {when}")
            curves[stored.get(series.key, "not fitted")] += 1
        if pictured is not None:
            _, frame, series = pictured
            plot_band(frame, out / "plots" / f"{alias}.png", title=f"{alias} {format_labels(series.labels)}",
                      last=REPLAY_DAYS * 86400)
        table.add_row(alias, str(len(result.series)), ", ".join(f"{k} {v}" for k, v in curves.most_common()),
                      f"{statistics.median(inside):.3f}" if inside else "-", "\n".join(alerts) or "none")
    write_csv_atomic(pd.DataFrame(index, columns=["file", "baseline", "labels", "alerts"]), out / "replay" / "index.csv")
    return table


def replay_file_name(alias: str, labels: dict[str, str]) -> str:
    """A replay CSV's name from its baseline and series labels, safe on every file system.

    >>> replay_file_name("inference_qps", {"model": "llama-3-8b", "tenant": "acme"})
    'inference_qps--model=llama-3-8b,tenant=acme.csv'
    >>> replay_file_name("x", {"path": "/a b"})
    'x--path=_a_b.csv'
    """
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{alias}--{re.sub(r'[^A-Za-z0-9_.=,+-]', '_', text)}.csv"


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """`frame` as CSV at `path`, written atomically (`store.write_atomic`)."""
    body = frame.to_csv(index=False).encode()
    write_atomic(path, lambda fh: fh.write(body), f".{path.name}.", ".tmp")


@contextmanager
def _stage(console: Console, text: str) -> Iterator[None]:
    t0 = time.monotonic()
    with console.status(text):
        yield
    console.print(f"[green]✓[/] {text} ({time.monotonic() - t0:.1f}s)")


def run_demo(out: str | Path = "out/demo", duration: float | None = None, workers: int | None = None) -> int:
    """Run the demo; serve until Ctrl-C, or for `duration` seconds when given."""
    from smartmetrics.app.daemon import Daemon

    console = make_console()
    out = Path(out).resolve()
    console.print(start_clean(out))
    (out / "replay").mkdir(parents=True, exist_ok=True)
    # held, not probed: the daemon binds its port minutes later, after the fit and the replays
    daemon_hold, live_hold = held_port(), held_port()
    try:
        port, live_port = daemon_hold.getsockname()[1], live_hold.getsockname()[1]
        end = align_down(time.time(), 60)
        with _stage(console, "generating 14 days of synthetic AI-serving metrics"):
            target = f"127.0.0.1:{live_port}"  # the backfilled series carry the live scrape's labels
            metrics = generate_demo_metrics(end, step=DEMO_STEP, ahead=LIVE_HOURS * 3600,
                                            extra={"job": JOB, "instance": target})
        with _stage(console, f"backfilling {len(metrics)} series into a local Prometheus (promtool)"):
            prom = LocalPrometheus(until(metrics, end), scrape_targets=[f"127.0.0.1:{port}"],
                                   scrape_interval="5s", workdir=out / "prometheus", jobs={JOB: [target]})
            prom.start()
        live_hold.close()
        live = LiveMetrics(metrics, live_port).start()
        daemon = None
        try:
            config_path = demo_config(DEMO_CONFIG, prom.url, out, port)
            config = load_config(config_path)
            console.print(f"config: {config_path}  (from {DEMO_CONFIG.name}, pointed at {prom.url})")
            run_fit(config, list(config.baselines), pool_for(config.cluster, workers))
            with _stage(console, "writing Prometheus rules and Grafana dashboards; loading the rules"):
                load_generated_rules(config, prom, out)
            with _stage(console, f"replaying the last {REPLAY_DAYS} days walk-forward for every series"):
                table = summarize(config, out)
            console.print(table)
            with _stage(console, "backfilling the bands over the past 14 days into Prometheus "
                                 "(smartmetrics backfill)"):
                for outcome in run_backfill(config, list(config.baselines), 14, prom.workdir / "data",
                                            until=end + 1):
                    if outcome.error:
                        console.print(f"[yellow]warning:[/] backfill of {outcome.alias}: {outcome.error}")
            console.print("Injected incidents (hours before the end of the data): "
                          + "; ".join(f"{i.what} {format_labels(i.labels)} {i.start_h:g}h-{i.end_h:g}h"
                                      for i in DEMO_INCIDENTS))
            daemon = Daemon(str(config_path), workers=workers)
            daemon_hold.close()
            daemon.start()
            with _stage(console, "waiting for Prometheus to scrape the bands from the daemon"):
                _wait_scraped(prom.url)
            _print_links(console, prom.url, port, out)
            console.print(live_incident_text(end, prom.url, config))
            _serve(console, duration)
        finally:
            if daemon is not None:
                daemon.stop()
            live.stop()
            prom.stop()
            console.print("stopped: Prometheus and the daemon are down; files are in " + str(out))
    finally:  # closed just before each server binds; here on every other way out
        daemon_hold.close()
        live_hold.close()
    return 0


def start_clean(out: Path) -> str:
    """Remove what an earlier demo left in `out` (its Prometheus data, store, replays, files): a
    second backfill over the first run's data would overlap it. Says what it did."""
    earlier = [out / name for name in DEMO_OUTPUTS if (out / name).exists()]
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if earlier:
        return f"{out} held an earlier demo run: removed its {', '.join(p.name for p in earlier)}; starting clean"
    return f"writing into {out} (new)"


def live_incident_text(end: int, prom_url: str, config: Config) -> str:
    """What will happen live, when, and where to watch it."""
    incident = LIVE_INCIDENT
    start = pd.Timestamp(end - incident.start_h * 3600, unit="s").strftime("%H:%M")
    stop = pd.Timestamp(end - incident.end_h * 3600, unit="s").strftime("%H:%M")
    alert = config.baselines["error_ratio"].alert
    wait = f"{alert.for_ / 60:g} minutes" if alert.for_ else "its `for`"
    return (f"live: an {incident.what} on {format_labels(incident.labels)} runs from {start} to {stop} UTC. "
            f"The error_ratio alert goes pending a minute or two after it starts and fires {wait} later: "
            f"watch {prom_url}/alerts (and ALERTS{{baseline=\"error_ratio\"}} on the dashboard).")


def load_generated_rules(config: Config, prom: LocalPrometheus, out: Path) -> list[Path]:
    """Write `smartmetrics rules` and `smartmetrics grafana` output and have the local Prometheus load the rules."""
    from smartmetrics.render.grafana import write_grafana
    from smartmetrics.render.rules import write_rules

    written, _ = write_rules(config, out / "rules")
    rule_files = [p for p in written if not p.name.endswith(".test.yml")]  # those are promtool unit tests
    write_grafana(config, out / "grafana", "prometheus")
    prom.rule_files = list(rule_files)
    prom.write_config()
    prom.reload()
    return rule_files


def _wait_scraped(prom_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = httpx.get(f"{prom_url}/api/v1/query", params={"query": "count(smartmetrics_yhat_upper)"}).json()
        if doc["data"]["result"]:
            return
        time.sleep(0.5)
    raise RuntimeError("Prometheus did not scrape the daemon within a minute")


def _print_links(console: Console, prom_url: str, port: int, out: Path) -> None:
    query = 'smartmetrics_yhat_upper{baseline="inference_qps"}'
    console.print(
        f"\nPrometheus: {prom_url}/graph?g0.expr={query}&g0.tab=0&g0.range_input=14d\n"
        f"            (the bands over the past 14 days are backfilled; Prometheus shows them within a minute)\n"
        f"daemon:     http://127.0.0.1:{port}/metrics  http://127.0.0.1:{port}/api/v1/baselines\n"
        f"files:      {out}/replay/*.csv (one walk-forward replay per series)\n"
        f"plots:      {out}/plots/*.png (one series per baseline, with its band and alerts)\n"
        f"rules:      {out}/rules/  (loaded by this Prometheus: {prom_url}/alerts)\n"
        f"grafana:    {out}/grafana/  (dashboards and alert provisioning; data source uid `prometheus`)\n"
    )


def _serve(console: Console, duration: float | None) -> None:
    """Wait for Ctrl-C or SIGTERM (or `duration`); both stop the demo cleanly, even where the shell
    started it with SIGINT ignored (a background job)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if duration is None:
            console.print("serving; press Ctrl-C to stop")
        stop.wait(duration)
        if stop.is_set():
            console.print("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
