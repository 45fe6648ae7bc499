"""`smartmetrics backfill`: the bands over the history a Prometheus already holds.

The store keeps only the forecast ahead, so without this a dashboard shows bands from the first
retrain on. Backfill replays each baseline walk-forward over its history, exactly as the backtest
does (a retrain every day on the trailing `history`, release markers and `follow` honoured, never a
model that saw the day it predicts), and writes `smartmetrics_yhat`, `_lower` and `_upper` with the
labels the daemon exports into a Prometheus TSDB: `promtool tsdb create-blocks-from openmetrics`,
the blocks then moved into the data directory of that Prometheus, which loads them within a minute
(2.39 and later merge blocks that overlap its own).

The history stops where the Prometheus already holds bands the daemon exported (scraped), so the
two never overlap; `--until` moves that point.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smartmetrics.adapters.exporter import export_labels
from smartmetrics.adapters.markers import fetch_event_windows, fetch_expr, series_releases
from smartmetrics.adapters.remote_write import RemoteWriter, render_history_requests
from smartmetrics.adapters.source import SourceError, fetch_baseline
from smartmetrics.app.promlocal import LocalPrometheusError, MetricSeries, backfill
from smartmetrics.config import Config, redact_url
from smartmetrics.engine.calendars import Windows
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.backtest import WidenFn, backtest_series, first_band
from smartmetrics.render.promql import selector
from smartmetrics.settings import baseline_fit, fit_settings

DAY = 86400
BAND_COLUMNS = (("smartmetrics_yhat", "yhat"), ("smartmetrics_yhat_lower", "yhat_lower"),
                ("smartmetrics_yhat_upper", "yhat_upper"))


def replay(config: Config, alias: str, series: Series, releases: tuple[int, ...] = (),
           min_history: int = DAY, observed: Mapping[str, Windows] | None = None,
           widen: WidenFn | None = None) -> pd.DataFrame:
    """Walk-forward replay of one series as the daemon would have lived it: a retrain every day on
    the trailing `history`, its first band `min_history` (or the baseline's own, if longer) after its
    first point, as discovery gives it (`evaluation.backtest.first_band`). Its `releases` are
    re-levelled in training and re-anchored after, when the baseline reads release markers; `follow`
    as configured; calendar events as planned, a PromQL event where `observed` found it on; each
    retrain's band widened by `widen`, on-call's feedback, where given."""
    baseline = config.baselines[alias]
    settings = fit_settings(baseline)  # the settle time and absorb of its releases, if any
    follow = baseline.follow
    return backtest_series(
        series, baseline_fit(baseline, releases=releases, alias=alias, observed=observed), AlertRules.of_baseline(baseline),
        history=int(baseline.history), min_history=min_history,
        young=first_band(series.step, max(min_history, settings.min_history)),
        releases=releases if baseline.releases is not None else (), settle=settings.settle, absorb=settings.absorb,
        follow=follow.after if follow else 0.0, follow_absorb=follow.absorb if follow else "both", widen=widen,
    )


@dataclass
class BackfillOutcome:
    """What the backfill of one baseline wrote (or why it wrote nothing)."""

    alias: str
    series: int = 0
    samples: int = 0
    start: float | None = None
    end: float | None = None
    alerts: int = 0
    error: str | None = None


def exported_since(config: Config, alias: str, days: float, now: float) -> float | None:
    """When the source's first `smartmetrics_yhat_upper` of this baseline is (the daemon's exports,
    scraped), within the last `days`; None if it has none."""
    earliest = f"min(timestamp({selector('smartmetrics_yhat_upper', alias)}))"
    found = fetch_expr(config, alias, earliest, days * DAY, now, max_series=10)
    first = [s.timestamps[np.isfinite(s.values)] for s in found]
    times = [int(t[0]) for t in first if len(t)]
    return float(min(times)) if times else None


def band_history(
    config: Config, alias: str, days: float, until: float | None, now: float,
    on_series: Callable[[int, int], None] | None = None,
) -> tuple[list[MetricSeries], BackfillOutcome]:
    """The replayed band of every series of `alias` over the last `days`, before `until` (default: where
    the source already holds the daemon's exported bands, else now), as series to backfill."""
    outcome = BackfillOutcome(alias)
    window = config.baselines[alias].model_copy(update={"history": days * DAY})
    scoped = config.model_copy(update={"baselines": {**config.baselines, alias: window}})
    fetched = fetch_baseline(scoped, alias, end=now)
    if until is None:
        until = exported_since(config, alias, days, now) or now + 1
    releases: dict[str, tuple[int, ...]] = {}
    if config.baselines[alias].releases is not None:
        releases = series_releases(config, alias, fetched.series, now - days * DAY, now)
    observed = fetch_event_windows(config, alias, now - days * DAY, now)
    out: list[MetricSeries] = []
    for i, series in enumerate(fetched.series):
        if series.observed:
            frame = replay(config, alias, series, releases.get(series.key, ()), observed=observed)
            keep = frame.yhat_lower.notna() & frame.yhat_upper.notna() & (frame.timestamp < until)
            frame = frame[keep]
            if len(frame):
                labels = export_labels(alias, series.labels)
                ts = frame.timestamp.to_numpy(dtype=np.int64)
                out += [MetricSeries(name, labels, ts, frame[column].to_numpy(dtype=float))
                        for name, column in BAND_COLUMNS]
                outcome.series += 1
                outcome.samples += 3 * len(frame)
                outcome.alerts += int(frame.alert.sum())
                outcome.start = min(outcome.start or ts[0], ts[0])
                outcome.end = max(outcome.end or ts[-1], ts[-1])
        if on_series is not None:
            on_series(i + 1, len(fetched.series))
    return out, outcome


def write_blocks(series: Sequence[MetricSeries], data_dir: Path) -> list[str]:
    """Backfill `series` as TSDB blocks made beside `data_dir`, then moved into it (a running
    Prometheus never sees a half-written block); the names of the blocks moved."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smartmetrics-backfill-", dir=data_dir.parent) as tmp:
        staging = Path(tmp) / "blocks"
        backfill(series, staging)
        moved = []
        for block in sorted(p for p in staging.iterdir() if p.is_dir() and (p / "meta.json").exists()):
            os.replace(block, data_dir / block.name)
            moved.append(block.name)
    return moved


def push_history(history: Sequence[MetricSeries], writer: RemoteWriter, batch_size: int) -> None:
    """Send the band history through remote write, a few requests at a time; `OSError` with the
    receiver's reason if any request is refused or fails after its retries."""
    bodies = render_history_requests(((m.name, m.labels, m.timestamps, m.values) for m in history), batch_size)
    while chunk := list(itertools.islice(bodies, 20)):
        result = writer.send(chunk)
        if result.error or result.failed:
            raise OSError(f"remote write: {result.error or f'{result.failed} samples not accepted'} (the "
                          "receiver must accept out-of-order samples: see `smartmetrics backfill --help`)")


def run_backfill(
    config: Config, aliases: Sequence[str], days: float, data_dir: str | Path | None, until: float | None = None,
    on_progress: Callable[[str, int, int], None] | None = None, remote_write: bool = False,
) -> Iterator[BackfillOutcome]:
    """Backfill each baseline in turn into the TSDB at `data_dir`, or through `export.remote_write`;
    one outcome per baseline (a failing baseline is reported and the others go on)."""
    now = time.time()
    target = config.export.remote_write if remote_write and config.export else None
    if remote_write and target is None:
        raise ValueError("--remote-write needs export.remote_write in the config (url, auth, ...)")
    writer = RemoteWriter(target) if target is not None else None
    try:
        for alias in aliases:
            try:
                history, outcome = band_history(
                    config, alias, days, until, now,
                    None if on_progress is None else (lambda done, total, a=alias: on_progress(a, done, total)))
                if history and writer is not None and target is not None:
                    push_history(history, writer, target.batch_size)
                elif history:
                    write_blocks(history, Path(str(data_dir)))
            except (SourceError, LocalPrometheusError, OSError) as exc:
                outcome = BackfillOutcome(alias, error=str(exc))
            yield outcome
    finally:
        if writer is not None:
            writer.close()


def run_backfill_cli(config: Config, aliases: Sequence[str], days: float, data_dir: str | Path | None,
                     until: float | None, remote_write: bool = False) -> int:
    """`smartmetrics backfill`: a progress bar per baseline and a table of what was written; exit 1
    if a baseline failed or nothing at all was written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from smartmetrics.app.terminal import make_console

    console = make_console(stderr=True)
    outcomes = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks = {alias: progress.add_task(f"{alias}: fetching", total=None) for alias in aliases}

        def report(alias: str, done: int, total: int) -> None:
            progress.update(tasks[alias], description=f"{alias}: replaying", completed=done, total=total)

        for outcome in run_backfill(config, aliases, days, data_dir, until, report, remote_write):
            progress.update(tasks[outcome.alias], description=f"{outcome.alias}: {'failed' if outcome.error else 'done'}")
            outcomes.append(outcome)
    where = redact_url(config.export.remote_write.url) if remote_write and config.export and \
        config.export.remote_write else data_dir
    table = Table(title=f"smartmetrics backfill into {where}", title_justify="left",
                  caption="sent by remote write" if remote_write else "a running Prometheus loads new blocks within a minute")
    for column in ("baseline", "series", "samples", "from (UTC)", "to (UTC)", "alerts in the replay"):
        table.add_column(column, justify="left" if column == "baseline" else "right")

    def when(t: float | None) -> str:
        return "-" if t is None else pd.Timestamp(int(t), unit="s").strftime("%Y-%m-%d %H:%M")

    for o in outcomes:
        if o.error:
            table.add_row(o.alias, "-", "-", "-", "-", f"[red]{o.error}[/]")
        else:
            table.add_row(o.alias, str(o.series), f"{o.samples:,}", when(o.start), when(o.end), str(o.alerts))
    make_console().print(table)
    if any(o.error for o in outcomes):
        return 1
    if not any(o.samples for o in outcomes):
        console.print("[yellow]nothing written:[/] no series had a band before --until (is there more than a day "
                      "of history?)")
        return 1
    return 0
