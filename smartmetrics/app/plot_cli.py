"""`smartmetrics plot`: PNGs of a CSV series (replayed walk-forward) or of a baseline's live series."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from smartmetrics.adapters.source import fetch_baseline
from smartmetrics.adapters.store import STATE_FILE, StoreError, baseline_dir, load_baseline
from smartmetrics.config import Config
from smartmetrics.engine.series import format_labels, slug
from smartmetrics.evaluation.backtest import COLUMNS
from smartmetrics.render.plots import plot_band, render_live_frame


def plot_csv(path: str, out: str, *, sensitivity: str | float, last: float | None, title: str | None) -> Path:
    """Plot a backtest table as is, or replay a plain `timestamp,value` CSV first."""
    frame = pd.read_csv(path, nrows=1)
    if set(COLUMNS) <= set(frame.columns):
        frame = pd.read_csv(path)
    else:
        from smartmetrics.engine.durations import parse_duration
        from smartmetrics.evaluation.evaluate import run_backtest_file

        replay = Path(out).with_suffix(".backtest.csv")
        frame = run_backtest_file(path, replay, sensitivity=sensitivity, retrain_every=86400,
                                  history=int(parse_duration("14d")))
    if not pd.api.types.is_numeric_dtype(frame.timestamp):  # `backtest` writes NAB-style UTC text
        frame["timestamp"] = pd.to_datetime(frame.timestamp, utc=True).astype("int64") // 10**9
    return plot_band(frame, out, title=title or Path(path).name, last=last)


def plot_baseline(config: Config, alias: str, match: str | None, out_dir: str, last: float | None) -> list[Path]:
    """One PNG per series of a live baseline: its history from the source and its stored forecast."""
    from smartmetrics.adapters.api import matches, parse_matchers

    matchers = parse_matchers(match or "")
    try:
        state = load_baseline(baseline_dir(config.store.path, alias) / STATE_FILE)
        bands = {b.key: b for b in state.series}
    except StoreError:
        print(f"note: no stored baseline for {alias}; run `smartmetrics fit` to see its band", file=sys.stderr)
        bands = {}
    written = []
    for series in fetch_baseline(config, alias).series:
        if matchers and not matches(series.labels, matchers):
            continue
        frame = render_live_frame(series, bands.get(series.key))
        path = Path(out_dir) / f"{alias}-{slug(series.labels)}.png"
        written.append(plot_band(frame, path, title=f"{alias} {format_labels(series.labels)}", last=last))
    return written

