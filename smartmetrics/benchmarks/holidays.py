"""Holidays: false alerts on holidays and recall on the other days, with `calendar.holidays` and
without (issue 25).

Business series (a daytime peak on working days, a weekend a third as busy) whose holidays (one or
two a month) look like a Sunday, with dips and spikes injected on some working days, are replayed
walk-forward exactly as the backtest does (a retrain every day on the trailing 14 days), once with
the holidays given as `calendar.holidays.extra` and once without. An alert that starts on a holiday
is false; an injected anomaly is caught when an alert starts within it. The benchmark checks every
replayed day had a band (or was withdrawn by design) and fails loudly otherwise.

    python -m smartmetrics.benchmarks.holidays [--series 12] [--seed 0]
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np

from smartmetrics.benchmarks.dst import corpus_args, days_without_band, verdict
from smartmetrics.config import parse_config
from smartmetrics.engine.series import Series

DAY = 86400
START = datetime(2026, 9, 7, tzinfo=timezone.utc)  # a Monday
DAYS = 70
STEP = 300
HOLIDAYS = (date(2026, 10, 1), date(2026, 10, 14), date(2026, 10, 30), date(2026, 11, 11), date(2026, 11, 26))


def business_series(i: int, rng: np.random.Generator) -> tuple[Series, list[tuple[int, int]]]:
    """One series and its injected anomalies (start, end) on working days after the first two weeks."""
    ts = int(START.timestamp()) + STEP * np.arange(DAYS * DAY // STEP, dtype=np.int64)
    hour = (ts % DAY) / 3600
    days = (ts - ts[0]) // DAY
    weekday = (START.weekday() + days) % 7
    holiday = np.isin([(START.date().toordinal() + int(d)) for d in days], [h.toordinal() for h in HOLIDAYS])
    quiet = (weekday >= 5) | holiday
    shape = 0.2 + 0.8 * np.exp(-0.5 * ((hour - 13) / 3.5) ** 2)
    level = rng.uniform(50, 500)
    values = level * shape * np.where(quiet, 0.35, 1.0) * (1 + rng.normal(0, 0.04, len(ts)))
    anomalies = []
    working = [d for d in range(21, DAYS) if not quiet[d * DAY // STEP]]
    for d in rng.choice(working, size=3, replace=False):
        start = int(d) * (DAY // STEP) + int(rng.integers(30, 200))
        length = int(rng.integers(6, 24))
        values[start:start + length] *= rng.choice([0.3, 1.9])
        anomalies.append((int(ts[start]), int(ts[min(start + length, len(ts) - 1)])))
    return Series({"series": str(i)}, ts, values, STEP), anomalies


def replay_counts(items: list[tuple[Series, list[tuple[int, int]]]], calendar: bool) -> dict[str, float]:
    """False alerts on holidays, alerts elsewhere outside anomalies, anomalies caught, days without a band."""
    from smartmetrics.app.backfill import replay

    baseline: dict = {"expr": "x", "step": "5m", "history": "14d"}
    if calendar:
        baseline["calendar"] = {"holidays": {"extra": [h.isoformat() for h in HOLIDAYS]}}
    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9"}}, "baselines": {"b": baseline}})
    first = int(START.timestamp()) + 14 * DAY
    holiday_days = {int(datetime(h.year, h.month, h.day, tzinfo=timezone.utc).timestamp()) // DAY for h in HOLIDAYS}
    out = {"holiday_alerts": 0, "other_false": 0, "caught": 0, "anomalies": 0, "missing_days": 0}
    for series, anomalies in items:
        frame = replay(config, "b", series, min_history=14 * DAY)
        judged = frame[frame.timestamp >= first]
        out["missing_days"] += days_without_band(judged)
        starts = judged.timestamp[judged.alert == 1].to_numpy()
        inside = np.zeros(len(starts), dtype=bool)
        for lo, hi in anomalies:
            hit = (starts >= lo) & (starts <= hi + 1800)
            out["caught"] += int(hit.any())
            inside |= hit
        out["anomalies"] += len(anomalies)
        on_holiday = np.isin(starts // DAY, list(holiday_days))
        out["holiday_alerts"] += int(on_holiday.sum())
        out["other_false"] += int((~inside & ~on_holiday).sum())
    return out


def main(argv: list[str] | None = None) -> int:
    args, rng = corpus_args(argv, __doc__)
    items = [business_series(i, rng) for i in range(args.series)]
    judged_holidays = sum(h >= (START.date().toordinal() + 14) for h in (d.toordinal() for d in HOLIDAYS))
    print(f"{args.series} business series, 5m, {DAYS} days from {START:%Y-%m-%d}, {len(HOLIDAYS)} holidays "
          f"({judged_holidays} judged, from day 15), 3 injected dips or spikes per series on working days")
    print(f"{'':>22}  {'alerts on holidays':>18}  {'per holiday-series':>18}  {'recall':>8}  "
          f"{'other false alerts':>18}  {'days without band':>17}")
    missing = 0
    for label, calendar in (("with calendar.holidays", True), ("without", False)):
        r = replay_counts(items, calendar)
        missing += r["missing_days"]
        print(f"{label:>22}  {r['holiday_alerts']:18d}  {r['holiday_alerts'] / (judged_holidays * args.series):18.3f}  "
              f"{r['caught'] / max(r['anomalies'], 1):8.3f}  {r['other_false']:18d}  {r['missing_days']:17d}")
    return verdict(missing)


if __name__ == "__main__":
    raise SystemExit(main())
