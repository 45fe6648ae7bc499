"""`smartmetrics fit`: one retrain in the foreground, with a progress bar and a summary table."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smartmetrics.adapters.store import STATE_FILE, StoreError, baseline_dir, load_baseline, save_baseline
from smartmetrics.app.retrain import RetrainOutcome, retrain_baseline
from smartmetrics.app.terminal import make_console
from smartmetrics.app.workers import FitPool
from smartmetrics.config import Config
from smartmetrics.engine.state import BaselineState


def _top(counts: Counter, limit: int = 3) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.most_common(limit)) or "-"


def render_fit_summary(outcomes: Sequence[RetrainOutcome]) -> Table:
    """One row per baseline: series, curve types (how many kept from the last fit), chosen models,
    held-out coverage (median, and how many series fall more than a point below nominal), failures, time."""
    table = Table(title="smartmetrics fit", title_justify="left",
                  caption="held-out coverage: the last backtest day inside a band calibrated on the days before it; "
                          "kept: series whose curve type came from their last fit (--reclassify classifies all), "
                          "in brackets those that kept their backtest too")
    for column in ("baseline", "series", "curve types", "kept", "models", "held-out coverage (median)",
                   "below nominal -1pt", "failed", "seconds"):
        table.add_column(column, justify="left" if column in ("baseline", "curve types", "models") else "right")
    for o in outcomes:
        if o.error is not None:
            table.add_row(o.alias, "-", "-", "-", "-", "-", "-", o.stage, f"{o.seconds:.1f}", style="red")
            continue
        curves: Counter[str] = Counter()
        models: Counter[str] = Counter()
        for (curve, model), n in o.kinds.items():
            curves[curve] += n
            models[model] += n
        coverage = f"{statistics.median(o.coverage):.4f}" if o.coverage else "-"
        below = sum(c < o.nominal - 0.01 for c in o.coverage) if o.nominal is not None else 0
        failed = sum(o.failures.values())
        table.add_row(
            o.alias, f"{o.fitted}/{o.fetched}" if o.fetched else "no series", _top(curves),
            f"{o.kept}/{o.fitted} ({o.kept_backtests})" if o.fitted else "-", _top(models), coverage,
            f"{below}/{len(o.coverage)}" if o.coverage else "-", str(failed) if failed else "0", f"{o.seconds:.1f}",
            style=None if o.fitted else "yellow",
        )
    return table


def _previous(config: Config, alias: str, console: Console) -> BaselineState | None:
    """The stored state to merge into, or None (a corrupt file is reported and refit)."""
    path = baseline_dir(config.store.path, alias) / STATE_FILE
    if not path.exists():
        return None
    try:
        return load_baseline(path)
    except StoreError as exc:
        console.print(f"[yellow]warning:[/] {exc}; refitting from scratch")
        return None


def run_fit(config: Config, aliases: Sequence[str], pool: FitPool, reclassify: bool = False) -> int:
    """Retrain the baselines now on `pool` (closed at the end) and write them to the store (every
    series classified afresh with `reclassify`); a baseline whose expr matched no series is warned
    about by name; exit 1 if any baseline failed or nothing at all was fitted."""
    console = make_console(stderr=True)
    outcomes = []
    with closing(pool), Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        for alias in aliases:
            task = progress.add_task(f"{alias}: fetching", total=None)

            def report(done: int, total: int, task: int = task, alias: str = alias) -> None:
                progress.update(task, description=f"{alias}: fitting", completed=done, total=total)

            now = time.time()
            try:
                outcome = retrain_baseline(config, alias, _previous(config, alias, console), pool, now,
                                           on_progress=report, reclassify=reclassify)
            except Exception as exc:  # noqa: BLE001 - one baseline's failure never stops the others
                outcome = RetrainOutcome(alias, error=f"{alias}: retrain failed: {type(exc).__name__}: {exc}")
            if outcome.error is not None:
                console.print(f"[red]error:[/] {escape(outcome.error)}")
            elif outcome.state is not None:
                save_baseline(config.store.path, outcome.state)
            if outcome.interrupted is not None:
                console.print(f"[red]error:[/] baseline {alias}: {escape(outcome.interrupted)}: the fits stopped "
                              "before the fetch's end; what was fitted is stored, the other series keep their "
                              "previous bands", soft_wrap=True, highlight=False)
            if outcome.error is None and not outcome.fetched:
                console.print(f"[yellow]warning:[/] baseline {alias}: its expr matched no series over its "
                              f"history: {escape(config.baselines[alias].expr)} (check it in Prometheus, and "
                              "the source it reads)", soft_wrap=True, highlight=False)
            state = "done" if outcome.fetched else "no series"
            progress.update(task, description=f"{alias}: {state}", total=max(outcome.fetched, 1),
                            completed=max(outcome.fetched, 1))
            outcomes.append(outcome)
    make_console().print(render_fit_summary(outcomes))
    if not any(o.fitted for o in outcomes):
        console.print(f"[red]error:[/] nothing was fitted (baselines: {escape(', '.join(o.alias for o in outcomes))})",
                      highlight=False)
        return 1
    return 1 if any(o.error or o.interrupted for o in outcomes) else 0
