"""Sensitivity tuning: per baseline, the sensitivity and `for` that keep alerts within a budget on history.

Each series of a baseline is replayed walk-forward (daily retrain on the trailing history, as the
daemon lives it) once per candidate sensitivity. The alert logic of the generated rules (score over
the threshold, on the allowed side, deviation over the minimums, for `for` points in a row) then
counts, per candidate `for`: the alerts the history itself would have raised (its expected rate,
per series-week), and how many injected excursions it catches (a jump of `size` residual standard
deviations, at least 10% of the level, lasting `duration`, every 12 hours, on the alerting side).
The pick is the candidate within budget that catches most, then alerts least, then alerts soonest;
with none within budget, the quietest. Sensitivity sets both the band (where score 1 sits) and the
score threshold and `keep_firing_for` of its policy (`smartmetrics.engine.bands`). Beside the budget,
the table shows the rate the baseline's alerts really fired at: the alerts Alertmanager reported to
the daemon over the last four weeks (`recorded_rate`, from the store's `alerts.json`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from smartmetrics.config import Alert, Baseline, Follow
from smartmetrics.engine.alerts import AlertRecord
from smartmetrics.engine.bands import SENSITIVITY_WORDS
from smartmetrics.engine.calendars import Windows
from smartmetrics.engine.firing import AlertRules, Fired
from smartmetrics.engine.releases import SETTLE
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.backtest import DAY, first_band, replay_alerts, walk_forward_band

WEEK = 7 * DAY
RECORDED_WEEKS = 4  # how far back `recorded_rate` counts the alerts Alertmanager reported
SENSITIVITIES = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8)
FOR_POINTS = (1, 2, 3, 4)
FLOOR = 0.1
"""An injected excursion is at least this share of the series' level (near-constant series have sigma ~ 0)."""
_UNITS = {"week": WEEK, "w": WEEK, "day": DAY, "d": DAY, "hour": 3600, "h": 3600}


def parse_budget(text: str) -> float:
    """Alerts per series-week from `N/week`, `N/day` or `N/hour` (also `N/w`, `N/d`, `N/h`).

    >>> parse_budget("1/week"), parse_budget("0.5/d")
    (1.0, 3.5)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*", str(text))
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"budget {text!r} must look like 1/week, 0.5/day or 2/hour")
    return float(match.group(1)) * WEEK / _UNITS[match.group(2)]


@dataclass(frozen=True)
class Replay:
    """One series' values and its walk-forward band at one sensitivity."""

    timestamps: np.ndarray
    values: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    step: int
    stuck_after: np.ndarray | None = None  # per point, seconds (NaN: none), as the walk-forward fits stored it
    mean_lower: np.ndarray | None = None
    mean_upper: np.ndarray | None = None

    def fired(self, rules: AlertRules, values: np.ndarray | None = None) -> Fired:
        """What the baseline's rules fire on this replay (or on `values` instead of the history's)."""
        series = Series({}, self.timestamps, self.values if values is None else values, self.step)
        return replay_alerts(series, self.yhat, self.lower, self.upper, rules, stuck_after=self.stuck_after,
                             mean_lower=self.mean_lower, mean_upper=self.mean_upper)

    @property
    def weeks(self) -> float:
        """Series-weeks with a band (the part of history the alerts are judged on)."""
        return float(np.isfinite(self.yhat).sum()) * self.step / WEEK


@dataclass(frozen=True)
class Outcome:
    """What one (sensitivity, for) did on a baseline's history."""

    sensitivity: float | str
    for_points: int
    alerts: int
    weeks: float
    caught: int
    injected: int

    @property
    def rate(self) -> float:
        """Alerts per series-week."""
        return self.alerts / self.weeks if self.weeks else 0.0

    @property
    def recall(self) -> float:
        """Share of the injected excursions that fired."""
        return self.caught / self.injected if self.injected else 0.0


@dataclass(frozen=True)
class Recommendation:
    """The pick for one baseline, what the config has now, and whether the pick meets the budget."""

    alias: str
    series: int
    step: int
    budget: float
    chosen: Outcome
    current: Outcome
    recorded: float | None = None  # alerts/week Alertmanager reported (`recorded_rate`); None: no history

    @property
    def meets(self) -> bool:
        return self.chosen.rate <= self.budget

    @property
    def for_seconds(self) -> int:
        """The Prometheus `for` of the chosen points in a row: the first outside point starts pending."""
        return (self.chosen.for_points - 1) * self.step


def inject_excursions(replay: Replay, alert: Alert, size: float, duration: int,
                      every: int = DAY // 2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values with a jump of `size` residual sds (at least `FLOOR` of the level) for `duration`, every
    `every` seconds, on the alerting side; and the windows (rows)."""
    banded = np.flatnonzero(np.isfinite(replay.yhat) & np.isfinite(replay.values))
    if len(banded) == 0:
        return replay.values.copy(), []
    resid = (replay.values - replay.yhat)[banded]
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) or float(np.std(resid)) or 1.0
    width, gap = max(1, duration // replay.step), max(1, every // replay.step)
    values, windows = replay.values.copy(), []
    for n, start in enumerate(range(int(banded[0]) + gap // 2, len(values) - width, gap)):
        rows = slice(start, start + width)
        level = float(np.nanmedian(np.abs(replay.yhat[rows]))) if np.isfinite(replay.yhat[rows]).any() else 0.0
        jump = max(size * sigma, FLOOR * level, 1.5 * alert.min_abs_deviation, 1.5 * alert.min_rel_deviation * level)
        sign = {"up": 1.0, "down": -1.0}.get(alert.direction, 1.0 if n % 2 == 0 else -1.0)
        values[rows] = replay.yhat[rows] + sign * jump
        windows.append((start, start + width - 1))
    return values, windows


def candidate_rules(sensitivity: float | str, alert: Alert, for_points: int) -> AlertRules:
    """The rules a baseline with this `alert` section would get at `sensitivity` with `for_points` in a row."""
    return replace(AlertRules.of_sensitivity(sensitivity, for_points=for_points, direction=alert.direction,
                                             min_abs_deviation=alert.min_abs_deviation,
                                             min_rel_deviation=alert.min_rel_deviation),
                   stuck=alert.stuck, sustained=alert.sustained)


def evaluate(replays: Sequence[Replay], sensitivity: float | str, alert: Alert, for_points: int,
             size: float, duration: int) -> Outcome:
    """Alerts on the history as it was, and injected excursions caught, for one candidate.

    An alert is one firing period of any of the baseline's alerts, as `smartmetrics.engine.firing` replays
    the generated rules: the sensitivity's threshold, `for`, `keep_firing_for` merging crossings of
    one incident, and the stuck and sustained alerts where the fits learned them.
    """
    rules = candidate_rules(sensitivity, alert, for_points)
    alerts = caught = injected = 0
    for r in replays:
        alerts += int(r.fired(rules).alert.sum())
        values, windows = inject_excursions(r, alert, size, duration)
        firing = r.fired(rules, values).firing
        caught += sum(bool(firing[a:b + 1].any()) for a, b in windows)
        injected += len(windows)
    return Outcome(sensitivity, for_points, alerts, sum(r.weeks for r in replays), caught, injected)


def _sensitivity_rank(sensitivity: float | str) -> float:
    """A sensitivity as a number to order by (`low|medium|high` by their place in that order)."""
    return SENSITIVITY_WORDS[sensitivity] if isinstance(sensitivity, str) else float(sensitivity)


def choose(outcomes: Sequence[Outcome], budget: float) -> Outcome:
    """The best trade-off: within budget, most caught, then fewest alerts, then smallest `for` (alerts
    soonest), then the lowest sensitivity (the widest band); with none within budget, the quietest.

    A setting that catches as much as another with fewer alerts is better whatever its `for`: the
    `for` costs a step of delay, a false alert costs someone's attention.
    """
    within = [o for o in outcomes if o.rate <= budget]
    if within:
        return min(within, key=lambda o: (-o.recall, o.rate, o.for_points, _sensitivity_rank(o.sensitivity)))
    return min(outcomes, key=lambda o: (o.rate, -o.recall, o.for_points, _sensitivity_rank(o.sensitivity)))


FitFactory = Callable[[float | str, tuple[int, ...]], Callable[[Series, int], object]]
"""(sensitivity, the series' release times) -> walk-forward fit function."""


def replay_series(series: Series, fit: Callable[[Series, int], object], history: int,
                  releases: tuple[int, ...] = (), settle: float = SETTLE, absorb: str = "both",
                  follow: Follow | None = None, min_history: int = DAY) -> Replay:
    """The walk-forward band of one series (its first band after `min_history`, then a daily retrain
    on `history` before each day), re-anchored after its `releases` (pass a fit told the same
    releases) and following new levels as the baseline's `follow` says (None: never), as the daemon would."""
    band = walk_forward_band(series, fit, retrain_every=DAY, history=history,  # type: ignore[arg-type]
                             min_history=min(DAY, history), young=first_band(series.step, min(min_history, history))
                             ).with_releases(series, releases, settle, absorb)
    if follow is not None:
        band = band.with_follow(series, follow.after, follow.absorb)
    return Replay(series.timestamps, series.values, band.yhat, band.lower, band.upper, series.step,
                  band.stuck_after, band.mean_lower, band.mean_upper)


def replay_baseline(baseline: Baseline, series: Sequence[Series], sensitivity: float | str, fit_factory: FitFactory,
                    releases: Mapping[str, tuple[int, ...]] | None = None) -> list[Replay]:
    """`replay_series` of each of a baseline's series at one sensitivity, each told its `releases` (by
    series key) when the baseline has `releases`."""
    from smartmetrics.settings import fit_settings

    settings = fit_settings(baseline)  # the settle time and absorb of its releases, if any
    known = (releases or {}) if baseline.releases is not None else {}
    return [replay_series(one, fit_factory(sensitivity, known.get(one.key, ())), int(baseline.history),
                          known.get(one.key, ()), settings.settle, settings.absorb, baseline.follow,
                          int(baseline.min_history)) for one in series]


def tune_baseline(alias: str, baseline: Baseline, series: Sequence[Series], budget: float, fit_factory: FitFactory,
                  *, sensitivities: Sequence[float] = SENSITIVITIES, size: float = 6.0,
                  duration: int = 1800, releases: Mapping[str, tuple[int, ...]] | None = None) -> Recommendation:
    """Replay every candidate sensitivity and `for` on the baseline's series (each told its `releases`,
    by series key, when the baseline has `releases`) and pick one for the budget."""
    step = int(baseline.step)
    current_points = AlertRules.of_baseline(baseline).for_points(step)
    candidates = list(dict.fromkeys([*sensitivities, baseline.sensitivity]))
    outcomes, current = [], None
    for s in candidates:
        replays = replay_baseline(baseline, series, s, fit_factory, releases)
        for k in sorted({*FOR_POINTS, current_points}):
            outcome = evaluate(replays, s, baseline.alert, k, size, duration)
            if s == baseline.sensitivity and k == current_points:
                current = outcome
            if s in sensitivities and k in FOR_POINTS and (k - 1) * step < duration:
                outcomes.append(outcome)
    assert current is not None
    return Recommendation(alias, len(series), step, budget, choose(outcomes, budget), current)


def recorded_rate(records: Iterable[AlertRecord], alias: str, now: float, weeks: int = RECORDED_WEEKS) -> float:
    """Alerts per week of baseline `alias` as they really fired: the firing periods recorded from
    Alertmanager (`alerts.json`) that started in the `weeks` before `now`, over the whole window
    (a daemon that has recorded for less time than that is under-counted, never over-counted)."""
    since = now - weeks * WEEK
    return sum(1 for r in records if r.baseline == alias and since <= r.starts_at <= now) / weeks


def _recorded_cell(r: Recommendation) -> str:
    if r.recorded is None:
        return "no alerts.json"
    return f"{r.recorded:.2f} ({r.recorded / max(r.series, 1):.2f}/series)"


def render_table(recs: Sequence[Recommendation], budget_text: str):
    """A rich table: per baseline the current and the recommended settings with their rates on history."""
    from rich.table import Table

    from smartmetrics.engine.durations import format_duration

    table = Table(title=f"Alert tuning for a budget of {budget_text} per series")
    for col in ("baseline", "series", "series-weeks", "now: sensitivity / for", "alerts/series-week now",
                f"recorded alerts/week (last {RECORDED_WEEKS} weeks)", "recommended sensitivity", "for", "alerts/series-week", "excursions caught", "verdict"):
        table.add_column(col, justify="left" if col in ("baseline", "verdict") else "right")
    for r in recs:
        now_for = format_duration((r.current.for_points - 1) * r.step)
        table.add_row(
            r.alias, str(r.series), f"{r.chosen.weeks:.1f}", f"{r.current.sensitivity} / {now_for}",
            f"{r.current.rate:.2f}", _recorded_cell(r), f"{r.chosen.sensitivity}", format_duration(r.for_seconds),
            f"{r.chosen.rate:.2f}", f"{r.chosen.caught}/{r.chosen.injected}",
            "within budget" if r.meets else "over budget (quietest shown)")
    return table


def render_updated_config(text: str, recs: Sequence[Recommendation]) -> str:
    """The config text with each baseline's `sensitivity` and `alert.for` set; comments and order kept."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from smartmetrics.engine.durations import format_duration

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    data = yaml.load(text)
    for r in recs:
        node = data["baselines"][r.alias]
        node["sensitivity"] = r.chosen.sensitivity
        if not isinstance(node.get("alert"), dict):
            node["alert"] = CommentedMap()
        node["alert"]["for"] = format_duration(r.for_seconds)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def write_config(path: str, recs: Sequence[Recommendation]) -> None:
    """Write the recommendations into the YAML config atomically, after checking the result still loads."""
    import os
    import tempfile
    from pathlib import Path

    import yaml

    from smartmetrics.config import parse_config

    target = Path(path)
    text = render_updated_config(target.read_text(), recs)
    parse_config(yaml.safe_load(text), str(target))  # never write a config the daemon would refuse
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def engine_fit(baseline: Baseline, alias: str = "", observed: Mapping[str, Windows] | None = None) -> FitFactory:
    """The daemon's own fit for this baseline (its curve type, models, releases and calendar, a PromQL
    event where `observed` found it on), as a factory over sensitivity and the series' release times."""
    from smartmetrics.settings import baseline_fit

    def factory(sensitivity: float | str, releases: tuple[int, ...] = ()) -> Callable[[Series, int], object]:
        return baseline_fit(baseline, sensitivity, releases, alias, observed)
    return factory


def run_tune(config_path: str, config, aliases: Sequence[str], budget_text: str, *, write: bool, console,
             end: float | None = None, fetch: Callable[..., Any] | None = None) -> int:
    """The `tune` command: fetch each baseline's history, its release markers and where its PromQL
    calendar events were on (through `fetch`, default the source), tune it, print the table,
    optionally write back."""
    from smartmetrics.adapters.markers import fetch_event_windows, series_releases
    from smartmetrics.adapters.source import SourceError, fetch_baseline

    fetch = fetch or fetch_baseline
    budget = parse_budget(budget_text)
    now = time.time() if end is None else end
    alerts = _recorded_alerts(config.store.path, console)
    recs = []
    for alias in aliases:
        baseline = config.baselines[alias]
        try:
            fetched = fetch(config, alias, end=end)
        except SourceError as exc:
            console.print(f"[red]error[/red]: {exc}")
            return 1
        if not fetched.series:
            console.print(f"baseline {alias}: the expr returned no series; skipped")
            continue
        releases: Mapping[str, tuple[int, ...]] = {}
        observed: Mapping[str, Windows] = {}
        since = now - baseline.history
        try:
            releases = series_releases(config, alias, fetched.series, since, now, fetch)
        except SourceError as exc:
            console.print(f"[yellow]warning[/yellow]: {alias}: release markers: {exc}; replayed without them")
        try:
            observed = fetch_event_windows(config, alias, since, now, fetch)
        except SourceError as exc:
            console.print(f"[yellow]warning[/yellow]: {alias}: calendar events: {exc}; replayed without them")
        with console.status(f"tuning {alias}: {len(fetched.series)} series"):
            rec = tune_baseline(alias, baseline, fetched.series, budget, engine_fit(baseline, alias, observed),
                                releases=releases)
        recs.append(rec if alerts is None else replace(rec, recorded=recorded_rate(alerts, alias, now)))
    console.print(render_table(recs, budget_text))
    if write and recs:
        write_config(config_path, recs)
        console.print(f"wrote sensitivity and alert.for of {len(recs)} baselines to {config_path}")
    return 0


def _recorded_alerts(store: str, console) -> list[AlertRecord] | None:
    """The alert history under the store, None when there is none (the webhook is not set up) or it
    cannot be read (warned): the table then says so rather than showing a rate of 0."""
    from smartmetrics.adapters.alert_store import AlertStoreError, alerts_path, load_alerts

    if not alerts_path(store).exists():
        return None
    try:
        return load_alerts(store)
    except AlertStoreError as exc:
        console.print(f"[yellow]warning[/yellow]: {exc}; recorded alert rates not shown")
        return None
