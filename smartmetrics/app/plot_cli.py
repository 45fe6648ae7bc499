"""`smartmetrics plot`: PNGs of a CSV series (replayed walk-forward) or of a baseline's live series."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from smartmetrics.adapters.files import parse_timestamps, read_csv
from smartmetrics.adapters.source import fetch_baseline
from smartmetrics.adapters.store import STATE_FILE, StoreError, baseline_dir, load_baseline
from smartmetrics.config import Baseline, Config
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series, format_labels, slug
from smartmetrics.evaluation.backtest import COLUMNS, replay_alerts
from smartmetrics.render.plots import plot_band, render_live_frame
from smartmetrics.render.units import Unit, parse_unit


def unit_of_csv(path: str) -> Unit | None:
    """The unit a CSV's file name says (`p99_latency_seconds.csv`, `fetch`'s `<metric>-<hash>.csv`)."""
    return parse_unit(Path(path).stem)


def plot_csv(path: str, out: str, *, sensitivity: str | float, last: float | None, title: str | None,
             unit: Unit | None = None) -> tuple[Path, list[str]]:
    """Plot a backtest table as is, or replay a plain `timestamp,value` CSV first, the y axis in
    `unit` or the unit the file name says; returns the PNG and what reading the CSV repaired
    (`CsvReading.notes`), for the caller to report."""
    frame = pd.read_csv(path, nrows=1)
    notes: list[str] = []
    if set(COLUMNS) <= set(frame.columns):
        frame = pd.read_csv(path)
        frame["timestamp"] = parse_timestamps(frame.timestamp, path)  # `backtest` writes NAB-style UTC text
    else:
        from smartmetrics.engine.durations import parse_duration
        from smartmetrics.evaluation.evaluate import run_backtest_series

        reading = read_csv(path)
        notes = reading.notes()
        replay = Path(out).with_suffix(".backtest.csv")
        frame = run_backtest_series(reading.series, replay, sensitivity=sensitivity, retrain_every=86400,
                                    history=int(parse_duration("14d")))
    return plot_band(frame, out, title=title or Path(path).name, last=last, unit=unit or unit_of_csv(path)), notes


def plot_baseline(config: Config, alias: str, match: str | None, out_dir: str, last: float | None,
                  unit: Unit | None = None) -> list[Path]:
    """One PNG per series of a live baseline: its history from the source and its stored forecast;
    the y axis in `unit`, or the unit the baseline's expr (or alias) says."""
    from smartmetrics.adapters.api import matches, parse_matchers

    matchers = parse_matchers(match or "")
    try:
        state = load_baseline(baseline_dir(config.store.path, alias) / STATE_FILE)
        bands = {b.key: b for b in state.series}
    except StoreError:
        print(f"note: no stored baseline for {alias}; run `smartmetrics fit` to see its band", file=sys.stderr)
        bands = {}
    baseline = config.baselines[alias]
    unit = unit or parse_unit(baseline.expr) or parse_unit(alias)
    written = []
    for series in fetch_baseline(config, alias).series:
        if matchers and not matches(series.labels, matchers):
            continue
        frame = render_alert_columns(render_live_frame(series, bands.get(series.key)), series, baseline)
        path = Path(out_dir) / f"{alias}-{slug(series.labels)}.png"
        written.append(plot_band(frame, path, title=f"{alias} {format_labels(series.labels)}", last=last, unit=unit))
    return written


def render_alert_columns(frame: pd.DataFrame, series: Series, baseline: Baseline) -> pd.DataFrame:
    """`firing` and `alert` of a live frame as the baseline's generated alert fires them on the
    history where the band reaches (threshold, direction, `for`, `keep_firing_for`), not merely
    "outside the band"."""
    past = frame.value.notna().to_numpy()
    rows = frame[past]
    replayed = Series(series.labels, rows.timestamp.to_numpy(dtype=np.int64), rows.value.to_numpy(dtype=np.float64),
                      series.step)
    fired = replay_alerts(replayed, rows.yhat.to_numpy(dtype=np.float64), rows.yhat_lower.to_numpy(dtype=np.float64),
                          rows.yhat_upper.to_numpy(dtype=np.float64), AlertRules.of_baseline(baseline))
    firing, alert = np.zeros(len(frame), dtype=int), np.zeros(len(frame), dtype=int)
    firing[past], alert[past] = fired.firing.astype(int), fired.alert.astype(int)
    return frame.assign(firing=firing, alert=alert)

