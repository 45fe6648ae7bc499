"""`smartmetrics classify`: curve type per series from a config's baselines or from CSV files.

Loading, classifying and rendering live here so that `cli.py` only wires the arguments; the output is
a rich table for people or JSON (one object per series) for scripts. Each series is also fitted (at
its baseline's settings, `medium` for CSV files) so that the row says the coverage its band keeps on
the last day of its history when calibrated only on the days before (`bands.held_out_coverage`): a
band that will not hold shows here before it pages anyone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartmetrics.adapters.files import read_csv_series
from smartmetrics.config import Config
from smartmetrics.engine.classify import Classification, classify_series, format_periods
from smartmetrics.engine.ensemble import FitSettings, fit_series
from smartmetrics.engine.series import Series, format_labels
from smartmetrics.settings import fit_settings

EXIT_OK, EXIT_FAILURE = 0, 1


class InputError(Exception):
    """The series to classify could not be had (a source error); the message says why."""


@dataclass(frozen=True)
class Row:
    """One classified series: where it came from and the verdict."""

    source: str
    name: str
    labels: dict[str, str]
    result: Classification
    coverage: dict[str, Any] | None = None  # nominal and held-out coverage of the fitted band
    holidays: tuple[str, ...] = ()  # the holidays (dates) in the history and forecast, fitted as such
    feedback: dict[str, float] | None = None  # the stored band's widening by on-call's feedback, per side

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "labels": self.labels, "coverage": self.coverage,
                "holidays": list(self.holidays), "feedback": self.feedback} | self.result.to_dict()


def band_coverage(series: Series, settings: FitSettings) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The fitted band's nominal, calibrated (in-sample) and held-out coverage (None if the fit
    fails), and the holidays the fit saw."""
    try:
        fitted = fit_series(series, settings)
    except Exception:  # noqa: BLE001 - a series that cannot be fitted is still classified
        return None, ()
    coverage = fitted.coverage
    return ({"nominal": coverage["nominal"], "calibrated": coverage["achieved"],
             "held_out": coverage.get("held_out"), "held_out_points": coverage.get("held_out_n", 0)},
            tuple(fitted.training.get("holidays", ())))


def classify_csv(paths: Sequence[str]) -> list[Row]:
    """Classify NAB-format `timestamp,value` files; a file that cannot be read raises ValueError/OSError."""
    rows = []
    for path in paths:
        series = read_csv_series(path)
        rows.append(Row("csv", path, {}, classify_series(series), *band_coverage(series, FitSettings())))
    return rows


def classify_baselines(config: Config, aliases: Sequence[str], end: float | None = None) -> list[Row]:
    """Fetch each baseline's history from its source and classify every series it returns."""
    from smartmetrics.adapters.source import SourceError, fetch_baseline  # network I/O only on this path

    rows = []
    for alias in aliases:
        try:
            result = fetch_baseline(config, alias, end)
        except SourceError as exc:
            raise InputError(str(exc)) from None
        settings = fit_settings(config.baselines[alias], alias)
        widened = stored_feedback(config.store.path, alias)
        rows.extend(_row(alias, s, settings, widened.get(s.key)) for s in result.series)
    return rows


def stored_feedback(store: str, alias: str) -> dict[str, dict[str, float]]:
    """Per series key, how the stored band of `alias` was widened by feedback (none if not stored)."""
    from smartmetrics.adapters.store import STATE_FILE, StoreError, baseline_dir, load_baseline

    path = baseline_dir(store, alias) / STATE_FILE
    try:
        state = load_baseline(path) if path.exists() else None
    except StoreError:
        return {}  # the daemon sets an unreadable state aside and refits it; nothing to show meanwhile
    return {b.key: b.meta["feedback"] for b in (state.series if state else ()) if b.meta.get("feedback")}


def _row(alias: str, series: Series, settings: FitSettings, feedback: dict[str, float] | None = None) -> Row:
    return Row(alias, format_labels(series.labels), dict(series.labels), classify_series(series),
               *band_coverage(series, settings), feedback)


def render_json(rows: Sequence[Row]) -> str:
    """All rows as a JSON array (stable key order)."""
    return json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True)


def _cell(features: dict[str, float], key: str) -> str:
    value = features.get(key)
    return "-" if value is None else f"{value:.2f}"


def _coverage_cell(coverage: dict[str, Any] | None) -> str:
    """`0.9981 (0.9995)`: held out (nominal), in red when more than a point below nominal."""
    if not coverage or coverage.get("held_out") is None:
        return "-"
    held, nominal = coverage["held_out"], coverage["nominal"]
    text = f"{held:.4f} ({nominal:.4f})"
    return f"[red]{text}[/red]" if held < nominal - 0.01 else text


def render_table(rows: Sequence[Row], file: Any = None) -> None:
    """A rich table: series, type, periods, confidence, the key features and the deciding reason."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curve types of {len(rows)} series", show_lines=False)
    for title in ("series", "type", "periods", "conf.", "season", "trend", "shift", "noise/level",
                  "zeros", "history", "held-out cov.", "holidays", "feedback", "why"):
        table.add_column(title, overflow="fold")
    for row in rows:
        f = row.result.features
        season = max((f.get(k, 0.0) for k in ("seasonal_daily", "seasonal_weekly", "seasonal_hourly",
                                              "seasonal_other")), default=0.0)
        table.add_row(
            Path(row.name).name if row.source == "csv" else f"{row.source} {row.name}", row.result.curve_type,
            format_periods(row.result.periods), f"{row.result.confidence:.2f}", f"{season:.2f}",
            _cell(f, "trend_strength"), _cell(f, "shift_strength"), _cell(f, "relative_noise"),
            _cell(f, "zero_share"), f"{f.get('history_days', 0.0):.1f}d", _coverage_cell(row.coverage),
            ", ".join(row.holidays) or "-",
            " ".join(f"{side} x{factor:g}" for side, factor in (row.feedback or {}).items()) or "-",
            "; ".join(r for r in row.result.reasons if r.startswith("regimes ")) or
            (row.result.reasons[0] if row.result.reasons else ""),
        )
    Console(file=file or sys.stdout, width=200).print(table)


def run_classify(*, csv: Sequence[str] | None, config: Config | None, aliases: Sequence[str],
                 as_json: bool, end: float | None = None) -> int:
    """The command: classify, print table or JSON, return the exit code (1 when input cannot be read)."""
    try:
        rows = classify_csv(csv) if csv else classify_baselines(config, aliases, end) if config else []
    except (OSError, ValueError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if as_json:
        print(render_json(rows))
    else:
        render_table(rows)
    return EXIT_OK
