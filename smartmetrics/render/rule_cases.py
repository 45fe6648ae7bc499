"""`promtool test rules` cases for the generated rules: each alert fires outside the band, through its `for`.

Per baseline, one test feeds a series' value and band at one-minute resolution (the band series also
carry a daemon `job`/`instance` when the series has none, as a `honor_labels` scrape gives them) and
walks through: inside the band, above it long enough to fire, back inside, below it, back inside,
and, when a minimum deviation is set, just outside the band but by less than that minimum. Alerts
are expected only on the sides that `direction` allows, never before `for` has passed.

A baseline with a stuck-value alert gets a second test: its series appears holding one value (quiet:
not yet watched for a whole window), changes at every step (quiet), holds one value (fires once the
window has passed), then disappears (quiet at once). A second series that holds one value all along
but has no `smartmetrics_stuck_after_seconds` (no stuck detection) never alerts.

A baseline with a sustained-deviation alert gets a third test, its series' mean limits fed as the
daemon exports them (both limits, whatever the rule's sides): the series appears outside its range
(quiet while the window holds fewer than N samples, then fires), comes back inside (still firing
while the window's mean is outside, at a step where that can be seen), makes a one-step spike outside
(quiet: the mean stays inside), leaves on the other side (fires only where `direction` and the
stored limits allow), and leaves again and disappears (kept firing for `keep_firing_for`, then quiet,
well before the window's mean would forget it). A second series outside all along but without limits
never alerts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from smartmetrics.config import Alert, Config
from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.firing import for_seconds
from smartmetrics.engine.series import format_labels
from smartmetrics.render.parts import (
    LOWER,
    UPPER,
    VALUE,
    VALUE_PANEL_ID,
    YHAT,
    alert_name,
    check_grafana_url,
    dashboard_uid,
    keep_firing_seconds,
    score_threshold,
)
from smartmetrics.render.stuck_rules import STUCK, describe_stuck, stuck_alert_name
from smartmetrics.render.sustained_rules import SIDES, MeanWindow, describe_sustained, sustained_alert_name

YHAT_VALUE, LOWER_VALUE, UPPER_VALUE = 100.0, 90.0, 120.0
INSIDE = 105.0
SAMPLE_LABEL_VALUE = 'x"y\\z'
"""Test label values carry a quote and a backslash so that every quoting path is exercised."""
DAEMON = {"job": "smartmetrics", "instance": "daemon:9877"}


@dataclass(frozen=True)
class Phase:
    """A stretch of minutes at one value, and which side (if any) it is expected to alert on."""

    value: float
    minutes: int
    side: str | None


def excursion(alert: Alert, half: float, yhat: float, threshold: float) -> float:
    """A deviation that is clearly an anomaly: past the threshold and past both minimum deviations."""
    return max(half * (threshold + 2.0), 2 * alert.min_abs_deviation, 2 * alert.min_rel_deviation * abs(yhat))


def plan_phases(alert: Alert, threshold: float, keep_minutes: int, for_: float) -> list[Phase]:
    """Inside, above, inside, below, inside (and a small excursion when a minimum deviation is set);
    each quiet stretch after an excursion outlasts `keep_firing_for`."""
    hold, calm = math.ceil(for_ / 60) + 5, keep_minutes + 10
    up = YHAT_VALUE + excursion(alert, UPPER_VALUE - YHAT_VALUE, YHAT_VALUE, threshold)
    down = YHAT_VALUE - excursion(alert, YHAT_VALUE - LOWER_VALUE, YHAT_VALUE, threshold)
    phases = [Phase(INSIDE, 10, None), Phase(up, hold, "up"), Phase(INSIDE, calm, None),
              Phase(down, hold, "down"), Phase(INSIDE, calm, None)]
    small = max(alert.min_abs_deviation, alert.min_rel_deviation * YHAT_VALUE)
    if small > UPPER_VALUE - YHAT_VALUE:  # a value outside the band but under the minimum deviation
        phases += [Phase(UPPER_VALUE + 0.5 * (small - (UPPER_VALUE - YHAT_VALUE)), hold, None),
                   Phase(INSIDE, 5, None)]
    return phases


def series_values(phases: list[Phase]) -> str:
    """promtool's expanding notation for the phases, one value per minute."""
    return " ".join(f"{p.value:g}x{p.minutes - 1}" for p in phases)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def expected_link(grafana_url: str, alias: str, labels: dict[str, str]) -> str:
    """The dashboard link as the alert template should render it for these labels."""
    params = "".join(f"&var-{k}={quote_plus(v)}" for k, v in labels.items() if k != "baseline")
    return f"{check_grafana_url(grafana_url)}/d/{dashboard_uid(alias)}/?orgId=1&viewPanel={VALUE_PANEL_ID}{params}"


def expected_alert(alias: str, config: Config, labels: dict[str, str], value: float,
                   grafana_url: str | None = None) -> dict[str, Any]:
    """The firing alert promtool should see for a value (its labels and rendered annotations)."""
    alert = config.baselines[alias].alert
    above = value >= YHAT_VALUE
    half = (UPPER_VALUE if above else LOWER_VALUE) - YHAT_VALUE
    score = abs(value - YHAT_VALUE) / abs(half)
    rendered = {
        "summary": f"{alias} is outside its expected range",
        "description": (f"Value {_fmt(value)} is outside the expected range {_fmt(LOWER_VALUE)} to "
                        f"{_fmt(UPPER_VALUE)} (expected {_fmt(YHAT_VALUE)}); anomaly score {score:.2f}."),
        "value": _fmt(value), "expected_range": f"{_fmt(LOWER_VALUE)} to {_fmt(UPPER_VALUE)}",
        "anomaly_score": f"{score:.2f}", "baseline": alias,
    }
    return _expected(alias, alert, labels, rendered, grafana_url)


def _expected(alias: str, alert: Alert, labels: dict[str, str], rendered: dict[str, str],
              grafana_url: str | None) -> dict[str, Any]:
    """An expected firing alert: its labels, and `rendered` plus the dashboard link and the user's annotations."""
    if grafana_url:
        rendered["dashboard"] = expected_link(grafana_url, alias, labels)
    rendered.update(alert.annotations)
    exp_labels = {**labels, **alert.labels, "severity": alert.severity, "baseline": alias}
    return {"exp_labels": dict(sorted(exp_labels.items())), "exp_annotations": dict(sorted(rendered.items()))}


def case_labels(alias: str, names: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """The test series' labels, and those its band and limits carry: the daemon's `job`/`instance`
    too where the series has none, as a `honor_labels` scrape gives them."""
    labels = {"baseline": alias, **{n: SAMPLE_LABEL_VALUE for n in names}}
    return labels, {**{k: v for k, v in DAEMON.items() if k not in names}, **labels}


def control_input(labels: dict[str, str], names: tuple[str, ...], values: str) -> list[dict[str, str]]:
    """A second series of the baseline (its first label changed) without band or limits, which must
    never alert; none when the baseline has no series labels to tell it apart."""
    if not names:
        return []
    return [{"series": VALUE + format_labels({**labels, names[0]: "other"}), "values": values}]


def render_case(alias: str, config: Config, names: tuple[str, ...], grafana_url: str | None = None) -> dict[str, Any]:
    """One promtool test: the inputs of one series and the alerts expected along its phases."""
    baseline = config.baselines[alias]
    alert, keep = baseline.alert, math.ceil(keep_firing_seconds(baseline) / 60)
    labels, band_labels = case_labels(alias, names)
    phases = plan_phases(alert, score_threshold(baseline), keep, for_seconds(baseline))
    inputs = [{"series": VALUE + format_labels(labels), "values": series_values(phases)}]
    total = sum(p.minutes for p in phases)
    for metric, level in ((YHAT, YHAT_VALUE), (LOWER, LOWER_VALUE), (UPPER, UPPER_VALUE)):
        inputs.append({"series": metric + format_labels(band_labels), "values": f"{level:g}x{total - 1}"})
    checks, start, for_minutes, fired = [], 0, math.ceil(for_seconds(baseline) / 60), []

    def check(minute: int, alerts: list) -> None:
        checks.append({"eval_time": f"{minute}m", "alertname": alert_name(alias), "exp_alerts": alerts})

    for phase in phases:
        if phase.side is not None and for_minutes >= 1:
            check(start + for_minutes - 1, [])  # still pending
        if phase.side is None and fired and keep >= 2:
            check(start + keep // 2, fired)  # back inside, but kept firing
        allowed = phase.side is not None and alert.direction in ("both", phase.side)
        fired = [expected_alert(alias, config, labels, phase.value, grafana_url)] if allowed else []
        check(start + phase.minutes - 1, fired)
        start += phase.minutes
    return {"name": f"{alias}: fires outside the band after for, silent inside", "interval": "1m",
            "input_series": inputs, "alert_rule_test": checks}


STUCK_VALUE, STUCK_CONTROL = 42.0, 50.0


def expected_stuck_alert(alias: str, config: Config, labels: dict[str, str], window: int,
                         grafana_url: str | None = None) -> dict[str, Any]:
    """The firing stuck-value alert promtool should see for a series holding `STUCK_VALUE`."""
    rendered = describe_stuck(alias, window, _fmt(STUCK_VALUE))
    return _expected(alias, config.baselines[alias].alert, labels, rendered, grafana_url)


def render_stuck_case(alias: str, config: Config, names: tuple[str, ...], window: int,
                      grafana_url: str | None = None) -> dict[str, Any]:
    """One promtool test of the stuck-value alert (phases in the module docstring), at one-minute steps."""
    minutes = window // 60
    labels, band_labels = case_labels(alias, names)
    appear, moving, held, gone = max(1, min(10, minutes - 1)), minutes + 10, minutes + 5, minutes + 5
    values = (f"{STUCK_CONTROL:g}x{appear - 1} 100+1x{moving - 1} {STUCK_VALUE:g}x{held - 1} "
              f"stale _x{gone - 1}")
    total = appear + moving + held + gone
    inputs = [{"series": VALUE + format_labels(labels), "values": values},
              {"series": STUCK + format_labels(band_labels), "values": f"{window}x{total - 1}"}]
    inputs += control_input(labels, names, f"{STUCK_CONTROL:g}x{total - 1}")  # held all along, no detection
    fired = [expected_stuck_alert(alias, config, labels, window, grafana_url)]
    held_from, gone_from = appear + moving, appear + moving + held
    expectations = [
        (appear - 1, []),  # one value since it appeared, but not watched for a whole window yet
        (appear + moving // 2, []), (held_from - 1, []),  # changing
        (held_from + minutes - 2, []),  # held, but not for the whole window yet
        (held_from + minutes, fired), (gone_from - 1, fired),
        (gone_from + 1, []), (gone_from + gone - 1, []),  # absent: no alert
    ]
    checks = [{"eval_time": f"{m}m", "alertname": stuck_alert_name(alias), "exp_alerts": alerts}
              for m, alerts in sorted(dict(expectations).items()) if m >= 0]
    return {"name": f"{alias}: stuck after {format_duration(window)} without a change, silent while it "
                    "changes or is absent",
            "interval": "1m", "input_series": inputs, "alert_rule_test": checks}


MEAN_LIMIT = {"upper": 20.0, "lower": 10.0}
MEAN_OUTSIDE = {"upper": 25.0, "lower": 5.0}
"""Far enough out that a one-step spike in a window of at least three steps keeps the mean inside."""
MEAN_INSIDE = 15.0


def expected_sustained_alert(alias: str, config: Config, labels: dict[str, str], window: MeanWindow,
                             mean: float, grafana_url: str | None = None) -> dict[str, Any]:
    """The firing sustained-deviation alert promtool should see for a window whose mean is `mean`."""
    shown = {"mean": _fmt(mean), **{side: _fmt(MEAN_LIMIT[side]) for side in window.sides}}
    rendered = describe_sustained(alias, window, shown)
    return _expected(alias, config.baselines[alias].alert, labels, rendered, grafana_url)


def _first_and_other(window: MeanWindow) -> tuple[str, str]:
    """The rule's first side of the normal range and the opposite side (which it may not alert on)."""
    first = window.sides[0]
    return first, next(side for side in SIDES if side != first)


def plan_mean_phases(window: MeanWindow, keep: int) -> list[tuple[float, int]]:
    """(value, minutes): outside on the rule's first side from the start, inside, a one-step spike,
    inside, outside on the other side, inside, outside again; each quiet stretch after an excursion
    outlasts the window and `keep` minutes of `keep_firing_for`."""
    minutes, step_minutes = window.seconds // 60, window.step / 60
    first, other = _first_and_other(window)
    # back inside at a minute no subquery step falls on, so the mean still is the excursion's alone
    hold = next((m for m in range(minutes + 5, minutes + 5 + math.ceil(step_minutes) + 1)
                 if (m * 60) % window.step), minutes + 5)
    calm, spike = minutes + keep + 10, max(1, math.ceil(step_minutes))
    return [(MEAN_OUTSIDE[first], hold), (MEAN_INSIDE, calm), (MEAN_OUTSIDE[first], spike),
            (MEAN_INSIDE, minutes + 5), (MEAN_OUTSIDE[other], minutes + 5), (MEAN_INSIDE, calm),
            (MEAN_OUTSIDE[first], minutes + 5)]


def render_sustained_case(alias: str, config: Config, names: tuple[str, ...], window: MeanWindow,
                          grafana_url: str | None = None) -> dict[str, Any]:
    """One promtool test of the sustained-deviation alert (phases in the module docstring), at one-minute
    steps; the mean is only checked where the whole window holds one value."""
    keep = math.ceil(keep_firing_seconds(config.baselines[alias]) / 60)
    labels, band_labels = case_labels(alias, names)
    first, other = _first_and_other(window)

    def fired(side: str) -> list[dict[str, Any]]:
        if side not in window.sides:
            return []
        return [expected_sustained_alert(alias, config, labels, window, MEAN_OUTSIDE[side], grafana_url)]

    phases = plan_mean_phases(window, keep)
    starts = [sum(m for _, m in phases[:i]) for i in range(len(phases) + 1)]
    hold, gone = starts[1], starts[-1]
    values = " ".join(f"{v:g}x{m - 1}" for v, m in phases) + f" stale _x{keep + 3}"
    inputs = [{"series": VALUE + format_labels(labels), "values": values}]
    total = gone + keep + 5
    for side, (_, metric) in SIDES.items():
        inputs.append({"series": metric + format_labels(band_labels), "values": f"{MEAN_LIMIT[side]:g}x{total - 1}"})
    inputs += control_input(labels, names, f"{MEAN_OUTSIDE[first]:g}x{total - 1}")  # outside, no limits
    expectations = [
        (math.ceil((window.points - 1) * window.step / 60) - 1, []),  # just appeared: fewer than N samples
        (hold - 1, fired(first)),
        (starts[2] - 1, []), (starts[3] - 1, []), (starts[4] - 1, []),  # calm, the spike, after it
        (starts[5] - 1, fired(other)), (starts[6] - 1, []),
        (gone - 1, fired(first)), (gone + keep + 1, []),  # gone: quiet once keep_firing_for has passed
    ]
    if (hold * 60) % window.step:
        expectations.append((hold, fired(first)))  # the value is back inside, the window's mean is not
    if keep >= 3:
        expectations.append((gone + keep - 2, fired(first)))
    checks = [{"eval_time": f"{m}m", "alertname": sustained_alert_name(alias), "exp_alerts": alerts}
              for m, alerts in sorted(dict(expectations).items())]
    return {"name": f"{alias}: fires when the mean over {format_duration(window.seconds)} leaves its limits, "
                    "silent inside, when new or gone",
            "interval": "1m", "input_series": inputs, "alert_rule_test": checks}


def render_rule_tests(config: Config, names: Mapping[str, tuple[str, ...]], rule_file: str,
                      grafana_url: str | None = None, stuck: Mapping[str, int] | None = None,
                      sustained: Mapping[str, MeanWindow] | None = None) -> dict[str, Any]:
    """The `promtool test rules` document for every baseline (and every stuck-value alert in `stuck`,
    every sustained-deviation alert in `sustained`)."""
    tests = []
    for alias in sorted(config.baselines):
        tests.append(render_case(alias, config, names[alias], grafana_url))
        if stuck and stuck.get(alias):
            tests.append(render_stuck_case(alias, config, names[alias], stuck[alias], grafana_url))
        if sustained and alias in sustained:
            tests.append(render_sustained_case(alias, config, names[alias], sustained[alias], grafana_url))
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
