"""`smartmetrics fetch`: each baseline's history written as CSV files plus a labels index.

Layout: `DIR/<alias>/<slug>.csv` (`timestamp,value`, gaps empty) and `DIR/<alias>/labels.json`
mapping each file name to its series labels. One failing baseline does not stop the others.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smartmetrics.adapters.files import write_csv_series
from smartmetrics.adapters.source import FetchResult, SourceError, fetch_baseline
from smartmetrics.config import Config
from smartmetrics.engine.series import slug


def write_baseline(result: FetchResult, out_dir: str | Path) -> Path:
    """Write one baseline's series and `labels.json` under `out_dir/<alias>/`; returns that folder."""
    folder = Path(out_dir) / result.alias
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, str]] = {}
    for series in result.series:
        name = f"{slug(series.labels)}.csv"
        write_csv_series(series, folder / name)
        index[name] = dict(sorted(series.labels.items()))
    tmp = folder / "labels.json.tmp"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / "labels.json")
    return folder


def render_summary(results: Sequence[FetchResult], failed: Sequence[str]) -> Table:
    """The summary table: one row per baseline, failures marked (a whole baseline, or the series of
    its batches that could not be fetched)."""
    table = Table(title="fetch summary")
    for column in ("baseline", "series", "dropped", "not fetched", "points", "requests", "MB", "seconds"):
        table.add_column(column, justify="left" if column == "baseline" else "right")
    for r in results:
        table.add_row(r.alias, str(len(r.series)), str(r.dropped), f"[red]{len(r.failed)}[/red]" if r.failed else "0",
                      f"{r.points:,}", str(r.requests), f"{r.bytes_received / 1e6:.1f}", f"{r.seconds:.2f}")
    for alias in failed:
        table.add_row(f"[red]{alias}[/red]", "[red]failed[/red]", "", "", "", "", "", "")
    return table


def _print_error(console: Console, message: str) -> None:
    """An error line, unwrapped and free of rich markup interpretation (PromQL has brackets)."""
    console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True, highlight=False)


def run_fetch(config: Config, aliases: Sequence[str], out_dir: str | Path, end: float | None = None) -> int:
    """Fetch and write every baseline in `aliases`; exit code 1 if any of them failed, or was written
    without the series of a batch that could not be fetched, else 0."""
    console = Console(file=sys.stderr)
    if not logging.getLogger("httpx").isEnabledFor(logging.DEBUG):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request hides the bar
    results: list[FetchResult] = []
    failed: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for alias in aliases:
            task = progress.add_task(f"{alias} (requests)", total=None)

            def report(done: int, total: int, task: int = task) -> None:
                progress.update(task, completed=done, total=total)

            try:
                result = fetch_baseline(config, alias, end, on_progress=report, partial=True)
                write_baseline(result, out_dir)
            except SourceError as exc:
                progress.update(task, description=f"[red]{alias} failed[/red]")
                _print_error(console, str(exc))
                failed.append(alias)
                continue
            except OSError as exc:
                _print_error(console, f"baseline {alias}: cannot write to {out_dir}: {exc}")
                failed.append(alias)
                continue
            results.append(result)
    console.print(render_summary(results, failed))
    if failed:
        console.print(f"[red]{len(failed)} of {len(aliases)} baselines failed: {', '.join(failed)}[/red]")
    partial = [r.alias for r in results if r.failed]
    if partial:
        console.print(f"[red]written without the series that could not be fetched: {', '.join(partial)}[/red]")
    return 1 if failed or partial else 0
