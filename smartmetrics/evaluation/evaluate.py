"""Quality benchmark: smartmetrics and its peers replayed by the same walk-forward backtest on the same
labelled data (a NAB-layout folder and/or the synthetic corpus), scored by the same scorers.

Work is spread over series with a process pool; each worker runs every detector on one series, so
the two prophet-bands variants share one Prophet fit per day.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smartmetrics.adapters.files import read_csv_series
from smartmetrics.adapters.store import write_atomic
from smartmetrics.engine.bands import band_policy
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.follow import AFTER as FOLLOW
from smartmetrics.engine.releases import SETTLE
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.backtest import (
    DAY,
    WidenFn,
    backtest_live,
    backtest_series,
    band_frame,
    first_band,
    walk_forward_band,
)
from smartmetrics.evaluation.peers import (
    ProphetFit,
    fit_prophet,
    fit_static_3sigma,
    grafana_adaptive_band,
    grafana_for_points,
)

SMARTMETRICS = "smartmetrics"
WITH_RELEASES = "smartmetrics+releases"
"""smartmetrics told when the data set's releases happened (`smartmetrics.engine.releases`), as a daemon with
`releases.expr` configured is: each retrain re-levels its history at the releases that settled in
it, and the band is re-anchored after the later ones; only on data sets that record releases."""
PEERS = ("prophet-bands", "prophet-bands-99", "grafana-adaptive", "static-3sigma")
NOMINAL = {"prophet-bands": 0.8, "prophet-bands-99": 0.99, "static-3sigma": 0.9973, "grafana-adaptive": None}


@dataclass(frozen=True)
class Case:
    """One labelled series: its name, data and anomaly windows as `(start, end)` Unix seconds."""

    name: str
    series: Series
    events: tuple[tuple[int, int], ...]
    kinds: tuple[str, ...] = ()  # the anomaly kind of each event, where known (synthetic)
    releases: tuple[int, ...] = ()  # benign changes a deploy marker would announce, where known (synthetic)
    family: str = ""  # the curve family: the synthetic curve type, or the corpus' kind of metric


@dataclass(frozen=True)
class Replay:
    """How to replay: sensitivity for smartmetrics, retrain period, trailing history, cold start."""

    sensitivity: str | float = "medium"
    retrain_every: int = DAY
    history: int = 14 * DAY
    min_history: int = DAY  # a baseline's default `min_history`
    young: bool = True  # the first band as the daemon's discovery fits it (`backtest.first_band`), not at
    # the first daily retrain after `min_history`
    for_points: int | None = None
    settle: float = SETTLE
    follow: float = FOLLOW


@dataclass
class Run:
    """One detector on one series: the backtest table, its `for` in points and the time spent fitting."""

    frame: pd.DataFrame
    for_points: int
    fit_seconds: float = 0.0
    fits: int = 0
    failures: int = 0


def load_nab(folder: str | Path) -> list[Case]:
    """Every CSV under `folder/data` with its windows from `folder/combined_windows.json` (NAB, and
    the real corpora of shared/bench/real in the same layout); the family is the file's `kind` in
    `meta.json` where there is one, else its folder."""
    folder = Path(folder)
    windows = json.loads((folder / "combined_windows.json").read_text())
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    cases = []
    for path in sorted((folder / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        if key not in windows:
            continue
        events = tuple(
            (_unix(a), _unix(b)) for a, b in windows[key]
        )
        family = str((meta.get(key) or {}).get("kind") or path.parent.name)
        cases.append(Case(key, read_csv_series(path, labels={"file": key}), events, family=family))
    return cases


def _unix(text: str) -> int:
    """NAB's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) as Unix seconds."""
    return int(pd.Timestamp(text, tz="UTC").timestamp())


def load_synthetic(n: int, seed: int = 0) -> list[Case]:
    """The seeded synthetic corpus of issue 3 (14 days at 5 minutes), anomalies as events."""
    from smartmetrics.evaluation.synth import make_corpus

    cases = []
    for i, item in enumerate(make_corpus(n, seed=seed)):
        name = f"synthetic/{i:03d}-{item.curve_type}-{item.noise}"
        events = tuple((int(a.start), int(a.end)) for a in item.anomalies)
        cases.append(Case(name, item.series, events, tuple(a.kind for a in item.anomalies), item.changes,
                          family=item.curve_type))
    return cases


class _Timed:
    """Wrap a fit function: time it, count fits, turn a failing fit into a period without band."""

    def __init__(self, fit: Callable[[Series, int], object]) -> None:
        self.fit, self.seconds, self.fits, self.failures = fit, 0.0, 0, 0

    def __call__(self, train: Series, horizon: int) -> object:
        """Fit as the wrapped function would, or return None (no band this period) if it raises."""
        start = time.perf_counter()
        try:
            return self.fit(train, horizon)
        except Exception:  # one bad fit must not sink the benchmark; it is counted and shown
            self.failures += 1
            return None
        finally:
            self.seconds += time.perf_counter() - start
            self.fits += 1


class _SharedProphet:
    """One Prophet fit per training window, shared by the 0.8 and 0.99 variants.

    A variant that reuses a cached fit is charged that fit's time in `reused`, so both report the
    cost of running alone.
    """

    def __init__(self) -> None:
        self.cache: dict[int, tuple[ProphetFit | None, float]] = {}
        self.reused: dict[float, float] = {}

    def fit_for(self, width: float) -> Callable[[Series, int], object]:
        """A backtest fit function for one interval width."""
        def fit(train: Series, horizon: int) -> object:
            if train.end in self.cache:
                self.reused[width] = self.reused.get(width, 0.0) + self.cache[train.end][1]
            else:
                start = time.perf_counter()
                self.cache[train.end] = (fit_prophet(train, horizon), time.perf_counter() - start)
            fitted = self.cache[train.end][0]
            return None if fitted is None else fitted.bands((width,))[width]
        return fit


def smartmetrics_fit(sensitivity: str | float, releases: tuple[int, ...] = (), settle: float = SETTLE,
                     absorb: str = "both", min_history: int = DAY) -> Callable[[Series, int], object]:
    """The engine under test as a backtest fit function, with a baseline's defaults; each fit is told
    the `releases` in its training data (none after it), as the daemon's retrain is."""
    from smartmetrics.engine.ensemble import FitSettings, walk_forward_fit

    settings = FitSettings(sensitivity=sensitivity, settle=settle, absorb=absorb, min_history=min_history)
    return walk_forward_fit(settings, releases)


def run_case(case: Case, detectors: tuple[str, ...], replay: Replay) -> dict[str, Run]:
    """Every detector replayed on one series (runs in a worker process)."""
    from smartmetrics.evaluation.peers import quiet_prophet

    quiet_prophet()
    series, runs, prophet = case.series, {}, _SharedProphet()
    common = dict(retrain_every=replay.retrain_every, min_history=replay.min_history,
                  young=first_band(series.step, replay.min_history) if replay.young else 0)
    for name in detectors:
        if name == "grafana-adaptive":
            start = time.perf_counter()
            k = grafana_for_points(series.step)
            frame = backtest_live(series, grafana_adaptive_band, _peer_rules(k), **common)
            runs[name] = Run(frame, k, time.perf_counter() - start, 1)
            continue
        if name == WITH_RELEASES:
            continue  # replayed beside smartmetrics below, with fits of its own told the releases
        k, fit, width = _retrained(name, replay, prophet)
        timed = _Timed(fit)
        rules = _rules(name, replay, k)
        if name == SMARTMETRICS:
            band = walk_forward_band(series, timed, history=replay.history, **common).with_follow(series, replay.follow)
            frame = band_frame(series, band, rules)
            if WITH_RELEASES in detectors:
                told = _Timed(smartmetrics_fit(replay.sensitivity, case.releases, replay.settle,
                                               min_history=replay.min_history))
                moved = walk_forward_band(series, told, history=replay.history, **common).with_releases(
                    series, case.releases, replay.settle, "both").with_follow(series, replay.follow)
                runs[WITH_RELEASES] = Run(band_frame(series, moved, rules), k, told.seconds,
                                          told.fits, told.failures)
        else:
            frame = backtest_series(series, timed, rules, history=replay.history, **common)
        seconds = timed.seconds + prophet.reused.get(width, 0.0)
        runs[name] = Run(frame, k, seconds, timed.fits, timed.failures)
    return runs


def _retrained(name: str, replay: Replay, prophet: _SharedProphet) -> tuple[int, Callable, float]:
    """`for` points, fit function and (for prophet) interval width of a retrained detector."""
    if name == SMARTMETRICS:
        k = replay.for_points or band_policy(replay.sensitivity).for_points
        return k, smartmetrics_fit(replay.sensitivity, min_history=replay.min_history), 0.0
    if name == "prophet-bands":
        return 1, prophet.fit_for(0.8), 0.8
    if name == "prophet-bands-99":
        return 3, prophet.fit_for(0.99), 0.99
    if name == "static-3sigma":
        return 3, fit_static_3sigma, 0.0
    raise ValueError(f"unknown detector {name!r} (known: {SMARTMETRICS}, {', '.join(PEERS)})")


def _rules(name: str, replay: Replay, for_points: int) -> AlertRules:
    """smartmetrics alerts as its generated rules do (threshold, `for`, `keep_firing_for`, stuck and
    sustained alerts); the peers alert as published: band edge, `for_points` in a row, nothing else."""
    if name != SMARTMETRICS:
        return _peer_rules(for_points)
    return AlertRules.of_sensitivity(replay.sensitivity, for_points=for_points)


def _peer_rules(for_points: int) -> AlertRules:
    return AlertRules(threshold=1.0, default_points=for_points, stuck=False, sustained=False)


def run_cases(
    cases: list[Case], detectors: tuple[str, ...], replay: Replay, workers: int
) -> Iterator[tuple[Case, dict[str, Run]]]:
    """Replay every case, in a pool of `workers` processes (inline when 1), yielding as each finishes."""
    if workers <= 1:
        for case in cases:
            yield case, run_case(case, detectors, replay)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_case, case, detectors, replay): case for case in cases}
        for future in as_completed(futures):
            yield futures[future], future.result()


def nab_rows(case: Case) -> list[tuple[int, int]]:
    """The case's windows as inclusive row ranges of its grid."""
    ts = case.series.timestamps
    rows = []
    for start, end in case.events:
        a, b = int(np.searchsorted(ts, start, "left")), int(np.searchsorted(ts, end, "right")) - 1
        if b >= a:
            rows.append((a, b))
    return rows


def run_backtest_series(
    series: Series, out: str | Path, *, sensitivity: str | float, retrain_every: int, history: int,
    rules: AlertRules | None = None, releases: tuple[int, ...] = (), settle: float = SETTLE,
    absorb: str = "both", follow: float = FOLLOW, follow_absorb: str = "both", widen: WidenFn | None = None,
) -> pd.DataFrame:
    """Replay one series walk-forward with smartmetrics' fit and alert logic (each retrain's band
    widened by `widen`, on-call's feedback, where given; re-anchored after `releases`, if any, and
    following new levels after `follow` seconds); write the table to `out`."""
    rules = rules or AlertRules.of_sensitivity(sensitivity)
    learn = min(DAY, history)  # a baseline's default min_history, never more than the history
    frame = backtest_series(
        series, smartmetrics_fit(sensitivity, releases, settle, absorb, learn), rules,
        retrain_every=retrain_every, history=history, min_history=learn, releases=releases, settle=settle,
        absorb=absorb, follow=follow, follow_absorb=follow_absorb, widen=widen, young=first_band(series.step, learn),
    )
    write_frame(frame, out)
    return frame


def write_frame(frame: pd.DataFrame, out: str | Path) -> None:
    """A backtest table as CSV: NAB-style UTC timestamps, empty cells where there is no band."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = frame.copy()
    text["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    write_atomic(out, lambda fh: text.to_csv(fh, index=False, na_rep="", float_format="%.10g"), ".backtest-", ".csv")


def evaluate_dataset(
    title: str, cases: list[Case], detectors: tuple[str, ...], replay: Replay, *, workers: int,
    nab: bool, console, out: Path | None = None, families: bool = True,
) -> list:
    """Replay a data set with every detector, print its leaderboard, optionally write the tables."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from smartmetrics.evaluation.leaderboard import (
        by_family,
        recall_by_kind,
        render_families,
        render_kinds,
        render_table,
        summarise,
    )

    per_detector: dict[str, list] = {d: [] for d in detectors}
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{title}: replaying", total=len(cases))
        for case, runs in run_cases(cases, detectors, replay, workers):
            rows = nab_rows(case) if nab else []
            for name, run in runs.items():
                per_detector[name].append((case, run, rows))
                if out is not None:
                    stem = case.name.replace("/", "__").removesuffix(".csv")
                    write_frame(run.frame, out / name / f"{stem}.csv")
            progress.advance(task)
    nominal = {**NOMINAL, SMARTMETRICS: band_policy(replay.sensitivity).coverage}
    nominal[WITH_RELEASES] = nominal[SMARTMETRICS]
    summaries = [summarise(d, nominal[d], sorted(per_detector[d], key=lambda r: r[0].name), nab=nab)
                 for d in detectors]
    clean = sum(1 for c in cases if not c.events)
    events = sum(len(c.events) for c in cases)
    console.print(render_table(
        f"{title}: {len(cases)} series ({clean} clean), {events} labelled events, "
        f"sensitivity {replay.sensitivity}, {time.perf_counter() - started:.0f} s", summaries, nab=nab))
    if any(c.kinds for c in cases):
        console.print(render_kinds(f"{title}: event recall by anomaly kind",
                                   {d: recall_by_kind(per_detector[d]) for d in detectors}))
    if families:
        console.print(render_families(f"{title}: per curve family (false alerts over all series, coverage on "
                                      "unlabelled points)", {d: by_family(per_detector[d]) for d in detectors}))
    return summaries


def run_evaluate(
    *, nab: str | None, synthetic: int, peers: tuple[str, ...], replay: Replay, workers: int,
    out: str | None, console, seed: int = 0, real: tuple[str, ...] = (),
) -> int:
    """The `evaluate` command: the NAB folder, real corpora in its layout and/or the synthetic corpus,
    smartmetrics beside its peers."""
    from smartmetrics.evaluation.synth import TUNING_SEEDS

    detectors = (SMARTMETRICS, *[p for p in peers if p != SMARTMETRICS])
    folder = Path(out) if out else None
    summaries = []
    if nab:
        summaries += evaluate_dataset(f"NAB subset ({nab})", load_nab(nab), detectors, replay, workers=workers,
                                      nab=True, console=console, out=folder / "nab" if folder else None)
    for corpus in real:
        name = Path(corpus).name
        summaries += evaluate_dataset(f"real corpus {name} ({corpus})", load_nab(corpus), detectors, replay,
                                      workers=workers, nab=True, console=console,
                                      out=folder / name if folder else None)
    if synthetic:
        with_releases = (SMARTMETRICS, WITH_RELEASES, *detectors[1:])
        split = "a tuning seed: not a test figure" if seed in TUNING_SEEDS else "a test seed"
        summaries += evaluate_dataset(f"synthetic corpus (seed {seed}, {split})", load_synthetic(synthetic, seed),
                                      with_releases, replay, workers=workers, nab=False, console=console,
                                      out=folder / "synthetic" if folder else None)
    console.print(
        "TTD: median minutes from event start to the first alert onset. FA/series-day: alert onsets in "
        "no labelled event per banded series-day, all series; FA/clean day: the same on series without "
        "any labelled event. Coverage: points outside every labelled event inside the band. fits/s: one worker process (a fit = one series' daily retrain). NAB "
        "scores use one fixed sensitivity; NAB's published scoreboard uses thresholds tuned on the corpus."
        + (f" {WITH_RELEASES}: told when the corpus' unlabelled deploys and operator changes happened, "
           f"as with releases.expr configured (settle {replay.settle / 60:.0f}m): the fits re-level "
           "their history at them and the band is re-anchored after them." if synthetic else "")
    )
    failed = sum(s.failures for s in summaries if s.detector in (SMARTMETRICS, WITH_RELEASES))
    if failed:  # a figure over fits that did not happen is no figure
        console.print(f"[red]error:[/red] {failed} smartmetrics fits failed; the figures above are incomplete")
        return 1
    return 0


def parse_sensitivity(text: str) -> str | float:
    """`low|medium|high` or a number in (0, 1), checked by the band policy; else a ValueError that
    lists the choices.

    >>> parse_sensitivity("medium"), parse_sensitivity("0.3")
    ('medium', 0.3)
    """
    try:
        value: str | float = text if text in ("low", "medium", "high") else float(text)
        band_policy(value)
    except ValueError:
        raise ValueError(f"expected low|medium|high or a number in (0,1), got {text!r}") from None
    return value
