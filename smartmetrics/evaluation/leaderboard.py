"""The `evaluate` leaderboard: per-detector metrics from backtest tables, and their rich rendering.

All detectors go through `summarise` with the same rules: NAB scores from alert onsets, event
metrics without point-adjust, false alerts (alert onsets in no labelled event) per series-day over
every series and over clean series only (no labelled event), band coverage on every point outside
the labelled events, band width against the series' interquartile range, fit throughput per worker
process; and the same per curve family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from smartmetrics.evaluation.scoring import (
    PROFILES,
    EventTally,
    coverage,
    event_tally,
    nab_normalised,
    width_over_iqr,
)


@dataclass
class Summary:
    """Everything the leaderboard prints for one detector on one data set."""

    detector: str
    nominal: float | None
    nab: dict[str, float] = field(default_factory=dict)
    events: EventTally = field(default_factory=EventTally)
    clean_alerts: int = 0
    clean_days: float = 0.0
    false_alerts: int = 0  # onsets in no labelled event, over every series
    days: float = 0.0  # banded series-days, over every series
    covered: int = 0  # points inside the band, of those outside every labelled event
    judged: int = 0
    widths: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    fits: int = 0
    failures: int = 0
    series: int = 0

    def alerts_per_day(self) -> float:
        """False alerts per series-day on clean series."""
        return self.clean_alerts / self.clean_days if self.clean_days else float("nan")

    def false_per_day(self) -> float:
        """Alert onsets outside every labelled event per series-day, over all series."""
        return self.false_alerts / self.days if self.days else float("nan")

    def coverage(self) -> float:
        """Share of unlabelled points (outside every labelled event) inside the band, over all series."""
        return self.covered / self.judged if self.judged else float("nan")

    def fits_per_second(self) -> float:
        """Fits (one per series per retrain) per second of one worker's time."""
        return self.fits / self.fit_seconds if self.fit_seconds > 0 else float("nan")


def summarise(detector: str, nominal: float | None, results: list, *, nab: bool) -> Summary:
    """Aggregate one detector's runs; `results` holds `(case, run, windows_in_rows)` triples."""
    out = Summary(detector, nominal)
    files = []
    for case, run, rows in results:
        out.series += 1
        frame = run.frame
        ts, values = frame["timestamp"].to_numpy(), frame["value"].to_numpy()
        lower, upper = frame["yhat_lower"].to_numpy(), frame["yhat_upper"].to_numpy()
        onsets = frame["alert"].to_numpy().astype(bool)
        files.append((onsets, rows))
        tally = event_tally(ts, onsets, case.events, tolerance=run.for_points * case.series.step)
        out.events.add(tally)
        days = np.isfinite(upper).sum() * case.series.step / 86400
        out.false_alerts, out.days = out.false_alerts + tally.false_alerts, out.days + days
        if not case.events:
            out.clean_alerts += int(onsets.sum())
            out.clean_days += days
        unlabelled = ~labelled_points(ts, case.events)
        inside, judged = coverage(values[unlabelled], lower[unlabelled], upper[unlabelled])
        out.covered, out.judged = out.covered + inside, out.judged + judged
        ratio = width_over_iqr(values, lower, upper)
        if math.isfinite(ratio):
            out.widths.append(ratio)
        out.fit_seconds += run.fit_seconds
        out.fits += run.fits
        out.failures += run.failures
    if nab:
        out.nab = {p.name: nab_normalised(files, p) for p in PROFILES}
    return out


def labelled_points(timestamps: np.ndarray, events) -> np.ndarray:
    """Points inside any labelled event `(start, end)`, both ends included.

    >>> labelled_points(np.arange(5), [(1, 2)]).astype(int).tolist()
    [0, 1, 1, 0, 0]
    """
    inside = np.zeros(len(timestamps), dtype=bool)
    for start, end in events:
        inside |= (timestamps >= start) & (timestamps <= end)
    return inside


def by_family(results: list) -> dict[str, Summary]:
    """The `(case, run, rows)` triples of one detector summarised per curve family (`Case.family`)."""
    groups: dict[str, list] = {}
    for triple in results:
        groups.setdefault(triple[0].family, []).append(triple)
    return {family: summarise("", None, triples, nab=False) for family, triples in sorted(groups.items())}


def render_families(title: str, per_detector: dict[str, dict[str, Summary]]) -> Table:
    """Per curve family and detector: series, false alerts per series-day, unlabelled coverage, recall."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for head in ("family", "detector", "series", "FA/series-day", "coverage", "event recall"):
        table.add_column(head, justify="left" if head in ("family", "detector") else "right")
    families = sorted({f for fams in per_detector.values() for f in fams})
    for family in families:
        for detector, fams in per_detector.items():
            s = fams.get(family)
            if s is None:
                continue
            recall = f"{s.events.detected}/{s.events.events}" if s.events.events else "—"
            table.add_row(family, detector, str(s.series), _num(s.false_per_day(), ".3f"),
                          _num(s.coverage(), ".4f"), recall)
        table.add_section()
    return table


def recall_by_kind(results: list) -> dict[str, tuple[int, int]]:
    """Per anomaly kind: (events detected, events) over `(case, run, rows)` triples whose cases know
    their kinds; an event counts as detected exactly as `event_tally` counts it."""
    out: dict[str, tuple[int, int]] = {}
    for case, run, _ in results:
        ts, onsets = run.frame["timestamp"].to_numpy(), run.frame["alert"].to_numpy().astype(bool)
        tolerance = run.for_points * case.series.step
        for event, kind in zip(case.events, case.kinds):
            hit = event_tally(ts, onsets, [event], tolerance).detected
            found, total = out.get(kind, (0, 0))
            out[kind] = (found + hit, total + 1)
    return out


def render_kinds(title: str, recalls: dict[str, dict[str, tuple[int, int]]]) -> Table:
    """Event recall per anomaly kind, one row per detector (`found/total` and the share)."""
    kinds = sorted({k for r in recalls.values() for k in r})
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("detector", style="bold")
    for kind in kinds:
        table.add_column(kind.replace("_", " "), justify="right")
    for detector, recall in recalls.items():
        cells = []
        for kind in kinds:
            found, total = recall.get(kind, (0, 0))
            cells.append(f"{found}/{total} {found / total:.2f}" if total else "—")
        table.add_row(detector, *cells)
    return table


def _ratio(x: float) -> str:
    """A speed ratio as `12.3x`, or `—` where there is none (a detector without fits of its own).

    >>> _ratio(12.34), _ratio(float("nan"))
    ('12.3x', '—')
    """
    return _num(x, ".1f") + ("x" if math.isfinite(x) else "")


def _num(x: float, fmt: str) -> str:
    """A number for the table, or a dash when it is undefined (no events, no clean series...)."""
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def render_table(title: str, summaries: list[Summary], *, nab: bool) -> Table:
    """The leaderboard as a rich table, one row per detector."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("detector", style="bold")
    if nab:
        for head in ("NAB std", "low FP", "low FN"):
            table.add_column(head, justify="right")
    for head in ("event P", "event R", "event F1", "TTD min", "FA/series-day", "FA/clean day",
                 "coverage (nominal)", "width/IQR", "fits/s", "vs prophet"):
        table.add_column(head, justify="right")
    base = next((s.fits_per_second() for s in summaries if s.detector == "prophet-bands"), float("nan"))
    for s in summaries:
        cells = [s.detector + (f" ({s.failures} failed fits)" if s.failures else "")]
        if nab:
            cells += [_num(s.nab.get(p.name, float("nan")), ".1f") for p in PROFILES]
        nominal = "—" if s.nominal is None else f"{s.nominal:.4g}"
        cells += [
            _num(s.events.precision(), ".2f"), _num(s.events.recall(), ".2f"), _num(s.events.f1(), ".3f"),
            _num(s.events.median_delay() / 60, ".0f"), _num(s.false_per_day(), ".3f"),
            _num(s.alerts_per_day(), ".3f"),
            f"{_num(s.coverage(), '.4f')} ({nominal})",
            _num(float(np.median(s.widths)) if s.widths else float("nan"), ".2f"),
            _num(s.fits_per_second(), ".1f"), _ratio(s.fits_per_second() / base),
        ]
        table.add_row(*cells)
    return table
