"""What event F1 the synthetic corpus allows: false alerts at its unlabelled benign changes.

The corpus (issue 3) gives `level_shift` series deploys that move their level for good, and
`constant` gauges operator changes of +1 reverted within the hour. Both are normal behaviour, so
they are not labelled; but the labelled anomalies include level shifts, spikes and dips of the same
size on the same kinds of series, and no detector can tell the two apart at the moment they begin.
This command replays the detectors on the corpus and counts, per detector, the false alerts that
begin within `--after` of such a change, then prints

- the detector's event precision, recall and F1 as `evaluate` scores them;
- the same with those alerts left out (what the detector does on everything else);
- the ceiling: the F1 of a detector that finds every labelled anomaly and raises no other false
  alert than one per benign change, which is what alerting on labelled shifts of that size implies.

    python -m smartmetrics.benchmarks.ceiling [--synthetic 300] [--seed 0] [--peers static-3sigma,grafana-adaptive]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from smartmetrics.evaluation.evaluate import SMARTMETRICS, Case, Replay, run_cases
from smartmetrics.evaluation.scoring import EventTally, event_tally, false_onsets
from smartmetrics.evaluation.synth import make_corpus


@dataclass
class Tally:
    """A detector's events and false alerts as `evaluate` counts them, and how many of those false
    alerts began at a benign change; `changes`: the benign changes that came while it had a band."""

    events: EventTally = field(default_factory=EventTally)
    at_changes: int = 0
    changes: int = 0

    def add(self, other: Tally) -> None:
        self.events.add(other.events)
        self.at_changes += other.at_changes
        self.changes += other.changes

    def without_changes(self) -> EventTally:
        """The same events with the false alerts at benign changes left out."""
        found = self.events
        return EventTally(found.events, found.detected, found.false_alerts - self.at_changes)


def tally_case(case: Case, frame, for_points: int, changes: tuple[int, ...], after: int) -> Tally:
    """Events found, false alert onsets, those of them beginning within `after` seconds of a change,
    and the changes that came while the detector had a band."""
    ts = frame["timestamp"].to_numpy()
    onsets = frame["alert"].to_numpy().astype(bool)
    tolerance = for_points * case.series.step
    starts = np.asarray(changes, dtype=np.int64)
    false = false_onsets(ts[onsets], case.events, tolerance)
    near = sum(bool(np.any((t >= starts) & (t <= starts + after))) for t in false)
    banded = ts[np.isfinite(frame["yhat_upper"].to_numpy())]
    seen = int(np.sum(starts >= banded.min())) if len(banded) else 0
    return Tally(event_tally(ts, onsets, case.events, tolerance), near, seen)


def _scores(tally: EventTally) -> str:
    return "  ".join(f"{x:.2f}" for x in (tally.precision(), tally.recall(), tally.f1()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smartmetrics.benchmarks.ceiling",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", type=int, default=300, help="series in the corpus (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--peers", default="static-3sigma,grafana-adaptive",
                        help="peers replayed beside smartmetrics, comma-separated ('' for none)")
    parser.add_argument("--after", type=int, default=7200,
                        help="seconds after a benign change within which a false alert counts as its (default 7200)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args(argv)
    detectors = (SMARTMETRICS, *[p for p in args.peers.split(",") if p])
    items = make_corpus(args.synthetic, seed=args.seed)
    cases = [Case(f"synthetic/{i:03d}", it.series, tuple((a.start, a.end) for a in it.anomalies))
             for i, it in enumerate(items)]
    changes = {case.name: it.changes for case, it in zip(cases, items)}
    totals = {d: Tally() for d in detectors}
    for case, runs in run_cases(cases, detectors, Replay(), args.workers):
        for name, run in runs.items():
            totals[name].add(tally_case(case, run.frame, run.for_points, changes[case.name], args.after))
    ours = totals[SMARTMETRICS]
    console = Console(width=max(Console().width, 100))
    console.print(f"synthetic corpus: {args.synthetic} series, seed {args.seed}, {ours.events.events} labelled "
                  f"anomalies, {ours.changes} unlabelled benign changes after the first day (deploy shifts, "
                  "operator changes)")
    table = Table("detector", "found", "false", f"at a change (<= {args.after // 60} min)", "P  R  F1",
                  "P  R  F1 without those", caption="P R F1: event precision, recall, F1 (as evaluate)")
    for name, t in totals.items():
        table.add_row(name, f"{t.events.detected}/{t.events.events}", str(t.events.false_alerts),
                      str(t.at_changes), _scores(t.events), _scores(t.without_changes()))
    console.print(table)
    n = ours.events.events
    ceiling = EventTally(n, n, ours.changes)
    console.print(f"ceiling: every labelled anomaly found and one false alert per benign change: "
                  f"P {ceiling.precision():.2f} R {ceiling.recall():.2f} F1 {ceiling.f1():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
