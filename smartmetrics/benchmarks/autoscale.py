"""Scaling ahead: a replica threshold on the forecast ahead (`smartmetrics_yhat_ahead` and
`smartmetrics_yhat_upper_ahead` at 15m) against the same threshold on the current value (issue 25).

The demo's request counters (`smartmetrics.app.demo_data`, three weeks, its incidents on the last
day) become QPS curves as Prometheus would read them (`rate(...[5m])` every 5 minutes): per model
and per model and tenant for the two busy tenants. Each curve is replayed walk-forward as the daemon
lives it: a retrain every day on the trailing 14 days, and at every moment of that day the table
read at now + ahead, as the exporter interpolates it. A replica serves `capacity` = the curve's
peak / 8, so replicas needed = ceil(value / capacity) and each multiple of capacity is a scale-up
threshold. A crossing is an upward pass of a threshold, re-armed once the series fell 10 % below it
(an autoscaler's stabilisation); the current value crosses when the load arrives.

For every crossing of the actual value, the lead is how many minutes earlier the ahead series last
crossed the same threshold (within the 2 h before, up to `ahead` after: a late one leads by less
than 0); an ahead crossing is needless when the actual value does not reach its threshold within
the ahead horizon after it (and wrong when not within the 2 h after either). The benchmark checks every replayed day had an ahead series and that
crossings were counted, and fails non-zero otherwise.

    python -m smartmetrics.benchmarks.autoscale [--days 7] [--ahead 15m]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from smartmetrics.config import parse_config
from smartmetrics.engine.durations import parse_duration
from smartmetrics.engine.series import Series

DAY, STEP, HISTORY = 86400, 300, 14
END = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday: the last replayed day is a Sunday
LEVELS, REARM, LOOKBACK = 8, 0.9, 7200


def qps_curves(days: int) -> list[Series]:
    """The demo's QPS as `rate(requests_total[5m])` every 5 minutes: per model, and per model and
    tenant for acme and globex."""
    from smartmetrics.app.demo_data import generate_demo_metrics
    from smartmetrics.instrument import REQUESTS

    counters = [m for m in generate_demo_metrics(int(END.timestamp()), days=days, step=60) if m.name == REQUESTS]
    keys = [("model_name",), ("model_name", "tenant_id")]
    curves: dict[tuple, np.ndarray] = {}
    ts = counters[0].timestamps[::5]
    for m in counters:
        rate = np.concatenate(([np.nan], np.diff(m.values[::5]) / STEP))
        for key in keys:
            if len(key) == 2 and m.labels["tenant_id"] not in ("acme", "globex"):
                continue
            labels = tuple((k, m.labels[k]) for k in key)
            curves[labels] = curves.get(labels, 0) + rate
    return [Series(dict(labels), ts, values, STEP) for labels, values in sorted(curves.items())]


def ahead_replay(series: Series, ahead: int, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(timestamps, yhat ahead, upper ahead) over the last `days` days, each day from a fit on the 14
    days before it read at t + `ahead`, and the days whose ahead series was mostly missing."""
    from smartmetrics.settings import baseline_fit

    baseline = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9"}}, "baselines": {"qps": {
        "expr": "x", "step": "5m", "history": f"{HISTORY}d", "ahead": [f"{ahead}s"]}}}).baselines["qps"]
    fit = baseline_fit(baseline, alias="qps")
    out_t, out_y, out_u, missing = [], [], [], 0
    for day in range(days, 0, -1):
        start = series.end - day * DAY
        past = (series.timestamps <= start) & (series.timestamps > start - HISTORY * DAY)
        fitted = fit(Series(series.labels, series.timestamps[past], series.values[past], STEP), DAY + ahead)
        t = series.timestamps[(series.timestamps > start) & (series.timestamps <= start + DAY)]
        yhat, _, upper = fitted.band_at(t + ahead)
        missing += int(np.mean(np.isfinite(upper)) < 0.9)
        out_t.append(t)
        out_y.append(yhat)
        out_u.append(upper)
    return np.concatenate(out_t), np.concatenate(out_y), np.concatenate(out_u), missing


def upward_crossings(values: np.ndarray, level: float, rearm: float = REARM) -> np.ndarray:
    """Indices where `values` rise to `level`, each once until they fell below `rearm` * level.

    >>> upward_crossings(np.array([1, 5, 4.8, 6, 2, 7, np.nan, 8]), 5.0).tolist()  # 4.8: not 10 % below
    [1, 5]
    """
    armed, found = True, []
    for i, v in enumerate(values):
        if not np.isfinite(v):
            continue
        if armed and v >= level:
            found.append(i)
            armed = False
        elif not armed and v < rearm * level:
            armed = True
    return np.array(found, dtype=np.int64)


@dataclass
class Tally:
    """Crossings of one ahead series against the actual value, over every curve and threshold."""

    leads: list[float]
    actual: int = 0
    unmatched: int = 0
    ahead: int = 0
    needless: int = 0
    wasted: int = 0  # not reached within LOOKBACK either: not early, wrong


def compare(t: np.ndarray, actual: np.ndarray, forecast: np.ndarray, capacity: float, ahead: int,
            tally: Tally) -> None:
    """Add one curve's crossings of every scale-up threshold to `tally`."""
    for k in range(1, LEVELS + 1):
        level = k * capacity
        real, early = t[upward_crossings(actual, level)], t[upward_crossings(forecast, level)]
        tally.actual += len(real)
        for when in real:
            before = early[(early >= when - LOOKBACK) & (early <= when + ahead)]
            if len(before):
                tally.leads.append((when - before[-1]) / 60)
            else:
                tally.unmatched += 1
        tally.ahead += len(early)
        for when in early:
            tally.needless += int(not np.any(actual[(t >= when) & (t <= when + ahead)] >= level))
            tally.wasted += int(not np.any(actual[(t >= when) & (t <= when + LOOKBACK)] >= level))


def share(part: int, whole: int) -> str:
    """`part (percent of whole)`.

    >>> share(3, 12)
    '3 (25%)'
    """
    return f"{part} ({part / max(whole, 1):.0%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7, help="replayed days after the 14 of history (default: 7)")
    parser.add_argument("--ahead", default="15m", help="forecast offset (default: 15m)")
    args = parser.parse_args(argv)
    ahead = int(parse_duration(args.ahead))
    curves = qps_curves(HISTORY + args.days)
    tallies = {"yhat_ahead": Tally([]), "upper_ahead": Tally([])}
    missing = 0
    for series in curves:
        t, yhat, upper, gaps = ahead_replay(series, ahead, args.days)
        missing += gaps
        actual = series.values[np.isin(series.timestamps, t)]
        capacity = float(np.nanmax(series.values)) / LEVELS
        for name, forecast in (("yhat_ahead", yhat), ("upper_ahead", upper)):
            compare(t, actual, forecast, capacity, ahead, tallies[name])
    print(f"{len(curves)} demo QPS curves (rate over 5m, every 5m), {args.days} days replayed walk-forward "
          f"after {HISTORY} days of history, ending {END:%Y-%m-%d}; ahead {args.ahead}; "
          f"capacity = peak / {LEVELS}, re-armed at {REARM:.0%}")
    print(f"{'threshold on':>14}  {'crossings':>9}  {'median lead (min)':>17}  {'p25 / p75':>11}  "
          f"{'unmatched':>9}  {'needless':>13}  {'not within 2h':>13}")
    print(f"{'current value':>14}  {tallies['yhat_ahead'].actual:9d}  {0.0:17.1f}  {'0 / 0':>11}  {0:9d}  {'0':>13}  {'0':>13}")
    for name, tally in tallies.items():
        lead = np.array(tally.leads)
        quartiles = f"{np.percentile(lead, 25):.0f} / {np.percentile(lead, 75):.0f}" if len(lead) else "-"
        print(f"{name:>14}  {tally.ahead:9d}  {np.median(lead) if len(lead) else float('nan'):17.1f}  "
              f"{quartiles:>11}  {tally.unmatched:9d}  {share(tally.needless, tally.ahead):>13}  "
              f"{share(tally.wasted, tally.ahead):>13}")
    counted = all(len(t.leads) > 0 for t in tallies.values()) and tallies["yhat_ahead"].actual > 0
    if missing or not counted:
        print(f"FAILED: {missing} replayed series-days without an ahead series; "
              f"crossings counted: {'yes' if counted else 'none'}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
