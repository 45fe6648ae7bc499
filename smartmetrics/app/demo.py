"""`smartmetrics demo`: the whole product on one machine, on synthetic AI-serving metrics.

A local Prometheus is backfilled with 14 days of inference metrics (incidents in the last day),
`configs/demo.yaml` is pointed at it, every baseline is fitted, the last days are replayed
walk-forward to show the alerts that would have fired, and the daemon is started for Prometheus to
scrape. Everything runs on 127.0.0.1 and stops on Ctrl-C (or after `--duration`), leaving nothing
running.
"""

from __future__ import annotations

import logging
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
from smartmetrics.adapters.store import load_store
from smartmetrics.app.demo_data import DEMO_INCIDENTS, generate_demo_metrics
from smartmetrics.app.fit import run_fit
from smartmetrics.app.promlocal import LocalPrometheus, free_port
from smartmetrics.app.terminal import make_console
from smartmetrics.config import Config, load_config, parse_config
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series, align_down, format_labels
from smartmetrics.evaluation.backtest import backtest_series
from smartmetrics.render.plots import plot_band
from smartmetrics.settings import baseline_fit, fit_settings

log = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
REPLAY_DAYS = 3


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


def replay(config: Config, alias: str, series: Series, releases: tuple[int, ...] = ()) -> pd.DataFrame:
    """Walk-forward replay of the last days, as the daemon would have lived them (its `releases`
    re-levelled in training and re-anchored after, when the baseline reads release markers)."""
    baseline = config.baselines[alias]
    settings = fit_settings(baseline)  # the settle time and absorb of its releases, if any
    start = series.end - REPLAY_DAYS * 86400 - int(baseline.history)
    keep = series.timestamps >= start
    recent = Series(series.labels, series.timestamps[keep], series.values[keep], series.step, series.name)
    follow = baseline.follow
    frame = backtest_series(recent, baseline_fit(baseline, releases=releases, alias=alias), AlertRules.of_baseline(baseline),
                            history=int(baseline.history),
                            min_history=max(86400, int(recent.end - recent.start) - REPLAY_DAYS * 86400 + 1),
                            releases=releases if baseline.releases is not None else (),
                            settle=settings.settle, absorb=settings.absorb,
                            follow=follow.after if follow else 0.0, follow_absorb=follow.absorb if follow else "both")
    return frame


def summarize(config: Config, out: Path) -> Table:
    """Replay every series of every baseline and tabulate alerts and coverage; write the CSVs."""
    table = Table(title=f"what the bands did over the last {REPLAY_DAYS} days (walk-forward replay)")
    for col in ("baseline", "series", "curve types", "coverage", "alerts fired (series: UTC start)"):
        table.add_column(col, justify="right" if col in ("series", "coverage") else "left")
    states, _ = load_store(config.store.path)
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
            frame = replay(config, alias, series, releases.get(series.key, ()))
            frame.to_csv(out / "replay" / f"{alias}-{series.key[:8]}.csv", index=False)
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
    return table


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
    (out / "replay").mkdir(parents=True, exist_ok=True)
    port = free_port()
    end = align_down(time.time(), 60)
    with _stage(console, "generating 14 days of synthetic AI-serving metrics"):
        metrics = generate_demo_metrics(end)
    with _stage(console, f"backfilling {len(metrics)} series into a local Prometheus (promtool)"):
        prom = LocalPrometheus(metrics, scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="5s",
                               workdir=out / "prometheus")
        prom.start()
    daemon = None
    try:
        config_path = demo_config(DEMO_CONFIG, prom.url, out, port)
        config = load_config(config_path)
        console.print(f"config: {config_path}  (from {DEMO_CONFIG.name}, pointed at {prom.url})")
        run_fit(config, list(config.baselines), workers=workers)
        with _stage(console, "writing Prometheus rules and Grafana dashboards; loading the rules"):
            load_generated_rules(config, prom, out)
        with _stage(console, f"replaying the last {REPLAY_DAYS} days walk-forward for every series"):
            table = summarize(config, out)
        console.print(table)
        console.print("Injected incidents (hours before the end of the data): "
                      + "; ".join(f"{i.what} {format_labels(i.labels)} {i.start_h:g}h-{i.end_h:g}h"
                                  for i in DEMO_INCIDENTS))
        daemon = Daemon(str(config_path), workers=workers)
        daemon.start()
        with _stage(console, "waiting for Prometheus to scrape the bands from the daemon"):
            _wait_scraped(prom.url)
        _print_links(console, prom.url, port, out)
        _serve(console, duration)
    finally:
        if daemon is not None:
            daemon.stop()
        prom.stop()
        console.print("stopped: Prometheus and the daemon are down; files are in " + str(out))
    return 0


def load_generated_rules(config: Config, prom: LocalPrometheus, out: Path) -> list[Path]:
    """Write `smartmetrics rules` and `smartmetrics grafana` output and have the local Prometheus load the rules."""
    from smartmetrics.app.promlocal import render_prometheus_config
    from smartmetrics.render.grafana import write_grafana
    from smartmetrics.render.rules import write_rules

    written, _ = write_rules(config, out / "rules")
    rule_files = [p for p in written if not p.name.endswith(".test.yml")]  # those are promtool unit tests
    write_grafana(config, out / "grafana", "prometheus")
    prom.rule_files = list(rule_files)
    (prom.workdir / "prometheus.yml").write_text(
        render_prometheus_config(prom.scrape_targets, prom.rule_files, prom.scrape_interval))
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
        f"\nPrometheus: {prom_url}/graph?g0.expr={query}&g0.tab=0&g0.range_input=1d\n"
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
