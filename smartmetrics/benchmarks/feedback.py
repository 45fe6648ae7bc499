"""Feedback from on-call: false alerts of the following weeks and recall, with on-call's `noise` on
the first week's false alerts and without (issue 26).

Each series of the seeded synthetic corpus (`smartmetrics.evaluation.synth`, test seeds) is replayed
walk-forward as the daemon lives it (`smartmetrics.app.backfill.replay`: a retrain every day on the
trailing 14 days, the baseline's rules), from `--warmup` days of history on. Every alert that starts
in no labelled anomaly during the first replayed week is then marked `noise`, at its start, as
on-call would, and the series is replayed again with that feedback: each retrain widens the band as
the daemon's would (`smartmetrics.engine.alerts.feedback_schedule`), from the feedback given before
its cut-off only. Printed per seed: false alerts in the following weeks and recall of the anomalies
that start in them, before and after, and their ratio; the same on the series given feedback (the
only ones feedback can change) and the ratio that leaves as a floor for any per-series rule; false
alerts by alert kind (feedback widens the band, not the limits of the sustained alert's mean).

The benchmark checks itself and exits 1, saying why, if a series was not replayed in full, if the
feedback widened no band or not exactly the series it should have, or if a band moved before the
first retrain that had feedback to act on (look-ahead).

    python -m smartmetrics.benchmarks.feedback [--series 108] [--seeds 2,3] [--days 35] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from smartmetrics.config import Config, parse_config
from smartmetrics.engine.alerts import AlertRecord, alert_id, feedback_factors, feedback_schedule, side_of
from smartmetrics.engine.firing import AlertRules
from smartmetrics.evaluation.scoring import event_tally, false_onsets
from smartmetrics.evaluation.synth import TUNING_SEEDS, LabelledSeries, make_corpus

DAY, WEEK = 86400, 7 * 86400
BASELINE = "synthetic"
ALERTNAME = "SmartmetricsAnomaly"


def baseline_config() -> Config:
    """A default baseline (medium sensitivity, 14 days of history, 5m) as the corpus is replayed."""
    return parse_config({"sources": {"p": {"url": "http://127.0.0.1:9"}},
                         "baselines": {BASELINE: {"expr": "x", "step": "5m", "history": "14d"}}})


@dataclass
class CaseResult:
    """One series replayed without and with feedback."""

    name: str
    rows: int = 0  # rows of each replay (must be the series' length)
    banded_before: bool = False
    banded_after: bool = False
    noise: int = 0  # first-week false alerts marked noise
    widened: int = 0  # retrains whose band the feedback widened
    expected_widened: bool = False  # whether feedback_factors over all of its feedback widens anything
    moved_early: int = 0  # points whose band moved before the first widened retrain (must be 0)
    changed: bool = False  # whether the band of the replay with feedback differs at all
    false_before: Counter[str] = field(default_factory=Counter)  # following weeks, by alert kind
    false_after: Counter[str] = field(default_factory=Counter)
    events: int = 0  # labelled anomalies starting in the following weeks
    caught_before: int = 0
    caught_after: int = 0


def noise_records(frame: pd.DataFrame, item: LabelledSeries, until: float, tolerance: float) -> list[AlertRecord]:
    """What on-call records on the first week: each false alert (an onset in no labelled anomaly, before
    `until`) as a record of its series with the band at its start, marked `noise` at its start."""
    series = item.series
    events = [(int(a.start), int(a.end)) for a in item.anomalies]
    onsets = frame[(frame.alert == 1) & (frame.timestamp < until)]
    false = set(false_onsets(onsets.timestamp.to_numpy(), events, tolerance).tolist())
    labels = {**series.labels, "alertname": ALERTNAME, "baseline": BASELINE}
    out = []
    for row in onsets[onsets.timestamp.isin(false)].itertuples():
        value, yhat = _finite(row.value), _finite(row.yhat)
        t = float(row.timestamp)
        out.append(AlertRecord(alert_id(series.key, t), BASELINE, series.key, labels, series.key, t, value=value,
                               yhat=yhat, lower=_finite(row.yhat_lower), upper=_finite(row.yhat_upper),
                               side=side_of(value, yhat), feedback="noise", feedback_at=t))
    return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class _Recorded:
    """A feedback schedule that remembers the retrains it widened (in the worker that replays)."""

    def __init__(self, records: list[AlertRecord], key: str) -> None:
        self.schedule, self.widened = feedback_schedule(records, BASELINE, key), []

    def __call__(self, cutoff: int) -> Mapping[str, float]:
        factors = self.schedule(cutoff)
        if factors:
            self.widened.append(cutoff)
        return factors


def judge_case(item: LabelledSeries, name: str, warmup: int) -> CaseResult:
    """Replay one series without feedback, record the first week's false alerts as noise, replay with it."""
    from smartmetrics.app.backfill import replay

    config = baseline_config()
    series = item.series
    tolerance = AlertRules.of_baseline(config.baselines[BASELINE]).for_points(series.step) * series.step
    first = series.start + warmup  # the first retrain (the corpus is midnight-aligned)
    week = first + WEEK
    before = replay(config, BASELINE, series, min_history=warmup)
    records = noise_records(before, item, week, tolerance)
    widen = _Recorded(records, series.key)
    after = replay(config, BASELINE, series, min_history=warmup, widen=widen)
    result = CaseResult(name, rows=min(len(before), len(after)) if len(before) == len(after) == len(series) else -1,
                        banded_before=bool(before.yhat_upper.notna().any()),
                        banded_after=bool(after.yhat_upper.notna().any()), noise=len(records),
                        widened=len(widen.widened), expected_widened=bool(feedback_factors(records, BASELINE)))
    band = ["yhat_lower", "yhat_upper"]
    moved = ~np.isclose(before[band].to_numpy(), after[band].to_numpy(), equal_nan=True).all(axis=1)
    result.changed = bool(moved.any())
    if widen.widened:
        result.moved_early = int(moved[before.timestamp.to_numpy() < min(widen.widened)].sum())
    events = [(int(a.start), int(a.end)) for a in item.anomalies if a.start >= week]
    result.events = len(events)
    for frame, false, caught in ((before, result.false_before, "caught_before"),
                                 (after, result.false_after, "caught_after")):
        later = frame[frame.timestamp >= week]
        onsets = later[later.alert == 1]
        wrong = set(false_onsets(onsets.timestamp.to_numpy(), [(int(a.start), int(a.end)) for a in item.anomalies],
                                 tolerance).tolist())
        false.update(onsets[onsets.timestamp.isin(wrong)].alerts.tolist())
        tally = event_tally(later.timestamp.to_numpy(), later.alert.to_numpy(), events, tolerance)
        setattr(result, caught, tally.detected)
    return result


def replay_seed(seed: int, n: int, days: float, warmup: int, workers: int) -> list[CaseResult]:
    """Every series of one seed's corpus judged, in `workers` processes (inline when 1)."""
    corpus = make_corpus(n, days=days, seed=seed)
    names = [f"{i:03d}-{c.curve_type}-{c.noise}" for i, c in enumerate(corpus)]
    if workers <= 1:
        return [judge_case(c, name, warmup) for c, name in zip(corpus, names, strict=True)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(judge_case, corpus, names, [warmup] * n))


def problems(results: list[CaseResult], n: int) -> list[str]:
    """Why the figures of one seed cannot be trusted (none: they can)."""
    out = []
    if len(results) != n:
        out.append(f"{len(results)} of {n} series replayed")
    short = [r.name for r in results if r.rows < 0]
    if short:
        out.append(f"{len(short)} series not replayed in full: {', '.join(short[:5])}")
    lost = [r.name for r in results if r.banded_before != r.banded_after]
    if lost:
        out.append(f"{len(lost)} series banded in one replay only: {', '.join(lost[:5])}")
    expected = {r.name for r in results if r.expected_widened}
    applied = {r.name for r in results if r.widened and r.changed}
    if not applied:
        out.append("the feedback widened no band")
    elif applied != expected:
        out.append(f"feedback applied to {len(applied)} series, expected {len(expected)}: "
                   f"{', '.join(sorted(applied ^ expected)[:5])}")
    early = [r.name for r in results if r.moved_early]
    if early:
        out.append(f"{len(early)} series' bands moved before their first retrain with feedback: {', '.join(early[:5])}")
    return out


def summary(results: list[CaseResult]) -> dict[str, float]:
    """The seed's totals: false alerts of the following weeks and recall, before and after."""
    fb, fa = sum(sum(r.false_before.values()) for r in results), sum(sum(r.false_after.values()) for r in results)
    events = sum(r.events for r in results)
    rb = sum(r.caught_before for r in results) / events if events else float("nan")
    ra = sum(r.caught_after for r in results) / events if events else float("nan")
    told = [r for r in results if r.noise]
    return {"false_before": fb, "false_after": fa, "ratio": fa / fb if fb else float("nan"), "recall_before": rb,
            "recall_after": ra, "events": events, "noise": sum(r.noise for r in results),
            "series_noise": len(told), "applied": sum(1 for r in results if r.widened and r.changed),
            "told_false_before": sum(sum(r.false_before.values()) for r in told),
            "told_false_after": sum(sum(r.false_after.values()) for r in told),
            "told_events": sum(r.events for r in told), "told_caught_before": sum(r.caught_before for r in told),
            "told_caught_after": sum(r.caught_after for r in told)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=108, help="series per corpus (default: 108, every kind, "
                        "noise level, with and without anomalies, both scales)")
    parser.add_argument("--seeds", default="2,3", help="corpus seeds (default: 2,3, test seeds)")
    parser.add_argument("--days", type=float, default=35, help="days per series (default: 35)")
    parser.add_argument("--warmup", type=float, default=7, help="days of history before the first retrain (7)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    warmup = int(args.warmup * DAY)
    following = args.days - args.warmup - 7
    print(f"synthetic corpus, {args.series} series per seed, 5m, {args.days:g} days; walk-forward from day "
          f"{args.warmup:g}; noise on every false alert of the first replayed week, at its start; judged on the "
          f"{following:g} days after it")
    print(f"{'seed':>10}  {'noise given':>11}  {'widened':>7}  {'FA before':>9}  {'FA after':>8}  {'ratio':>6}  "
          f"{'recall before':>13}  {'after':>6}  {'events':>6}  {'seconds':>7}")
    failed, met = [], True
    for seed in seeds:
        started = time.perf_counter()
        results = replay_seed(seed, args.series, args.days, warmup, args.workers)
        s = summary(results)
        split = " (tuning)" if seed in TUNING_SEEDS else ""
        print(f"{str(seed) + split:>10}  {s['noise']:5d} on {s['series_noise']:<3d}  {s['applied']:7d}  "
              f"{s['false_before']:9d}  {s['false_after']:8d}  {s['ratio']:6.3f}  {s['recall_before']:13.3f}  "
              f"{s['recall_after']:6.3f}  {s['events']:6d}  {time.perf_counter() - started:7.0f}")
        print(f"{'':>10}  on the {s['series_noise']} series given feedback: false alerts {s['told_false_before']} -> "
              f"{s['told_false_after']}, anomalies caught {s['told_caught_before']} -> {s['told_caught_after']} "
              f"of {s['told_events']}")
        untold = s["false_before"] - s["told_false_before"]
        print(f"{'':>10}  on the other series: {untold} false alerts; feedback on a series reaches no other, so no "
              f"per-series rule can go below a ratio of {untold / s['false_before'] if s['false_before'] else 0:.3f}")
        kinds = sorted(set().union(*(r.false_before for r in results), *(r.false_after for r in results)))
        for kind in kinds:
            print(f"{'':>10}  false alerts by kind {kind}: {sum(r.false_before[kind] for r in results)} -> "
                  f"{sum(r.false_after[kind] for r in results)}")
        met &= s["ratio"] <= 0.5 and s["recall_after"] >= 0.95 * s["recall_before"]
        failed += [f"seed {seed}: {p}" for p in problems(results, args.series)]
    print("target (false alerts of the following weeks at most halved, recall at least 95% of before): "
          + ("met on every seed" if met else "NOT met on at least one seed"))
    for problem in failed:
        print(f"FAILED: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
