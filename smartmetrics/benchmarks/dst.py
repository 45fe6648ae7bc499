"""Across a daylight-saving switch: false alerts of a daily-seasonal series that follows the local
clock, fitted with `timezone` set and in UTC (issue 25).

Series whose morning ramp and evening fall happen at fixed local hours in Europe/Berlin, with noise
and nothing else, are replayed walk-forward exactly as the backtest does (a retrain every day on
the trailing 14 days), once with `timezone: Europe/Berlin` and once in UTC, over weeks spanning the
spring switch. Every alert is a false alert. The benchmark checks that every series got a band on
every replayed day and prints false alerts per series-day before and after the switch.

    python -m smartmetrics.benchmarks.dst [--series 12] [--seed 0]
"""

from __future__ import annotations

import argparse
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from smartmetrics.config import parse_config
from smartmetrics.engine.series import Series

DAY = 86400
ZONE = "Europe/Berlin"
START = datetime(2026, 3, 1, tzinfo=ZoneInfo("UTC"))
SWITCH = datetime(2026, 3, 29, 1, tzinfo=ZoneInfo("UTC"))  # 02:00 CET becomes 03:00 CEST
DAYS = 42
STEP = 300


def local_hours(ts: np.ndarray, zone: str = ZONE) -> np.ndarray:
    """Hour of the local day (fractional) for each Unix second."""
    tz = ZoneInfo(zone)
    offsets = np.array([datetime.fromtimestamp(int(t), tz).utcoffset().total_seconds() for t in ts[::12]])
    offset = np.repeat(offsets, 12)[: len(ts)]
    return ((ts + offset) % DAY) / 3600


def daily_series(i: int, rng: np.random.Generator) -> Series:
    """Quiet nights, a ramp at 07:30-08:30 local time, a fall at 19:00-21:00, noise: no anomaly."""
    ts = int(START.timestamp()) + STEP * np.arange(DAYS * DAY // STEP, dtype=np.int64)
    hour = local_hours(ts)
    day = 1 / (1 + np.exp(-(hour - 8) * 4)) * 1 / (1 + np.exp((hour - 20) * 2))
    level = rng.uniform(50, 500)
    values = level * (0.15 + 0.85 * day) * (1 + rng.normal(0, 0.03, len(ts)))
    return Series({"series": str(i)}, ts, values, STEP)


def corpus_args(argv: list[str] | None, doc: str | None) -> tuple[argparse.Namespace, np.random.Generator]:
    """`--series N --seed S` of a synthetic-corpus benchmark, and its random generator."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=12, help="series in the corpus (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    args = parser.parse_args(argv)
    return args, np.random.default_rng(args.seed)


def days_without_band(judged) -> int:
    """Replayed days (rows of a backtest table) on which no point had a band."""
    return int(judged.yhat_upper.isna().groupby(judged.timestamp // DAY).all().sum())


def verdict(missing: int) -> int:
    """The exit code of a replay benchmark: 1, said loudly, if any replayed day had no band."""
    if missing:
        print(f"FAILED: {missing} replayed series-days had no band")
        return 1
    return 0


def replay_alerts(series: list[Series], zone: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Alert starts per series before and after the switch (replayed days only), and replayed days
    without a band (must be none)."""
    from smartmetrics.app.backfill import replay

    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9"}},
                           "baselines": {"b": {"expr": "x", "step": "5m", "history": "14d", "timezone": zone}}})
    switch = SWITCH.timestamp()
    first = int(START.timestamp()) + 14 * DAY
    before, after, missing = [], [], 0
    for s in series:
        frame = replay(config, "b", s, min_history=14 * DAY)
        judged = frame[frame.timestamp >= first]
        missing += days_without_band(judged)
        before.append(int(judged.alert[judged.timestamp < switch].sum()))
        after.append(int(judged.alert[judged.timestamp >= switch].sum()))
    return np.array(before), np.array(after), missing


def main(argv: list[str] | None = None) -> int:
    args, rng = corpus_args(argv, __doc__)
    series = [daily_series(i, rng) for i in range(args.series)]
    first, switch = START.timestamp() + 14 * DAY, SWITCH.timestamp()
    days_before = (switch - first) / DAY
    days_after = DAYS - 14 - days_before
    print(f"{args.series} daily series on the {ZONE} clock, 5m, {DAYS} days from {START:%Y-%m-%d}; "
          f"walk-forward from day 15; DST switch {SWITCH:%Y-%m-%d %H:%M} UTC")
    print(f"{'fitted in':>16}  {'FA/series-day before':>21}  {'after the switch':>16}  {'days without band':>17}")
    missing_in_all = 0
    for label, zone in ((ZONE, ZONE), ("UTC", "UTC")):
        before, after, missing = replay_alerts(series, zone)
        missing_in_all += missing
        print(f"{label:>16}  {before.sum() / (len(series) * days_before):21.3f}  "
              f"{after.sum() / (len(series) * days_after):16.3f}  {missing:17d}")
    return verdict(missing_in_all)


if __name__ == "__main__":
    raise SystemExit(main())
