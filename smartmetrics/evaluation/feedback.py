"""On-call's feedback in a walk-forward replay: which recorded alerts widen the bands of one series.

`smartmetrics backtest --feedback FILE` replays one series with the alert records of a feedback file
(`smartmetrics.adapters.alert_store.load_feedback_file`) applied at each retrain exactly as the
daemon applies them (`smartmetrics.engine.alerts.feedback_schedule`): only feedback given before a
retrain's cut-off counts. This module picks the baseline and series of the file that the replayed
series is, or says why it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smartmetrics.engine.alerts import ALERT_ONLY_LABELS, AlertRecord, feedback_schedule
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.evaluation.backtest import WidenFn


@dataclass(frozen=True)
class ReplayFeedback:
    """The feedback a replay of one series takes: its baseline and series key in the file, and how
    many `noise` and `real` records it has there."""

    baseline: str
    series: str
    noise: int
    real: int

    def widen(self, records: Sequence[AlertRecord]) -> WidenFn:
        """The widening of each retrain, from the records of this series given before its cut-off."""
        return feedback_schedule(records, self.baseline, self.series)


def pick_feedback(records: Sequence[AlertRecord], series: Series, baseline: str | None) -> ReplayFeedback:
    """The feedback of `records` that belongs to `series`: its baseline (`baseline`, or the file's only
    one) and its series key (the series' own labels, or, for a series without labels such as a CSV's,
    the file's only series of that baseline); `ValueError` saying what to narrow otherwise."""
    noted = [r for r in records if r.feedback is not None]
    baselines = sorted({r.baseline for r in noted})
    if baseline is None:
        if len(baselines) != 1:
            raise ValueError(f"the feedback file has feedback on {len(baselines)} baselines "
                             f"({', '.join(baselines) or 'none'}); choose one with --baseline")
        baseline = baselines[0]
    keys = sorted({r.series for r in noted if r.baseline == baseline})
    if not keys:
        raise ValueError(f"the feedback file has no feedback on baseline {baseline!r} "
                         f"(it has: {', '.join(baselines) or 'none'})")
    if series.key in keys:
        key = series.key
    elif not series.labels and len(keys) == 1:
        key = keys[0]
    else:
        shown = {r.series: _series_labels(r) for r in noted if r.baseline == baseline}
        listing = " ".join(shown[k] for k in keys[:5]) + (" ..." if len(keys) > 5 else "")
        raise ValueError(f"the feedback file has no feedback on series {format_labels(series.labels)} of baseline "
                         f"{baseline!r} (it has {len(keys)} series: {listing})")
    mine = [r for r in noted if r.baseline == baseline and r.series == key]
    return ReplayFeedback(baseline, key, sum(r.feedback == "noise" for r in mine),
                          sum(r.feedback == "real" for r in mine))


def _series_labels(record: AlertRecord) -> str:
    """The series an alert was on, as a selector: its labels without the alert's own."""
    return format_labels({k: v for k, v in record.labels.items() if k not in ALERT_ONLY_LABELS})
