"""The stuck-value alert of a baseline: a series that normally changes at almost every step stops changing.

A stuck value sits inside any band, so the anomaly score never sees it. The fit stores per series
`training.stuck_after` (seconds; 0 or absent: no stuck detection), the daemon exports it as
`smartmetrics_stuck_after_seconds`, and each baseline whose stored series have any gets one more
alerting rule, e.g. for a window W of 30m:

    alert QpsAnomalyStuck
      changes(smartmetrics:value{baseline="qps"}[30m]) == 0              no change within W
      and on(baseline, model) smartmetrics:value{baseline="qps"}            ... and present now
      and on(baseline, model) smartmetrics:value{baseline="qps"} offset 30m ... and already W ago
      and on(baseline, model) smartmetrics_stuck_after_seconds{baseline="qps"} <= 1800

W is the largest `stuck_after` of the baseline's stored series, rounded up to a whole minute: one
window per baseline keeps the rule a plain range query; a series that would count as stuck sooner
alerts a little late rather than ever early. The last line keeps only series with stuck detection,
a current band, and a `stuck_after` the window covers (a later fit may raise it above W until the
rules are regenerated). The two presence guards matter: `changes()` returns 0 for a range holding
one or a few equal samples, so without them the alert would fire for a series that has just
appeared (or rules just loaded) and for up to W after a series disappeared.

No `for`: the window already is the duration (a `for` would only add to W), and the guards make a
single evaluation trustworthy. No `keep_firing_for` either: the alert ends with the first change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smartmetrics.adapters.exporter import STUCK_METRIC, stored_stuck_after
from smartmetrics.config import Alert, Config
from smartmetrics.engine.durations import format_duration, whole_minutes
from smartmetrics.engine.state import BaselineState
from smartmetrics.render.parts import (
    VALUE,
    _on,
    alert_name,
    finish_annotations,
    query_template,
    render_alert_labels,
)
from smartmetrics.render.promql import number, selector

STUCK = STUCK_METRIC[0]


def stuck_alert_name(alias: str) -> str:
    """The stuck-value alert of a baseline: its anomaly alert's name plus `Stuck`.

    >>> stuck_alert_name("inference_qps")
    'InferenceQpsAnomalyStuck'
    """
    return alert_name(alias) + "Stuck"


def stuck_window(state: BaselineState | None) -> int:
    """Seconds: the largest stored `stuck_after` of the baseline, rounded up to a minute; 0 for none.

    >>> from smartmetrics.engine.state import SeriesBand
    >>> bands = [SeriesBand({}, 0, 60, [], [], [], meta={"training": {"stuck_after": s}}) for s in (0, 1500, 1801)]
    >>> stuck_window(BaselineState("q", 0.0, tuple(bands)))
    1860
    """
    if state is None:
        return 0
    longest = max((stored_stuck_after(band.meta) for band in state.series), default=0.0)
    return whole_minutes(longest)


def stuck_windows(config: Config, states: Mapping[str, BaselineState]) -> dict[str, int]:
    """Per baseline whose alert has `stuck` on and whose stored series have stuck detection, its window."""
    windows = {alias: stuck_window(states.get(alias)) for alias, b in config.baselines.items() if b.alert.stuck}
    return {alias: w for alias, w in windows.items() if w > 0}


def stuck_condition(alias: str, names: tuple[str, ...], window: int, compare: bool = True) -> str:
    """The series that have not changed within `window` seconds, as the module docstring explains.

    With `compare=False` the `== 0` is left out (Grafana applies it as its own step).
    """
    on, value, w = _on(names), selector(VALUE, alias), format_duration(window)
    parts = [f"changes({value}[{w}])" + (" == 0" if compare else ""), value, f"{value} offset {w}",
             f"{selector(STUCK, alias)} <= {number(window)}"]
    return f"\nand {on}\n".join(parts)


def describe_stuck(baseline: str, window: int, shown: str) -> dict[str, str]:
    """Summary, description, value and baseline, with `baseline` and the value as `shown` gives them
    (templates in the rule, their rendered values in the promtool cases)."""
    w = format_duration(window)
    return {
        "summary": f"{baseline} has not changed for {w}",
        "description": (f"Value {shown} has not changed for {w}, though this series normally changes at "
                        "almost every step: its source may be stuck (a frozen exporter, a stalled counter, "
                        "a cached result)."),
        "value": shown,
        "baseline": baseline,
    }


def render_stuck_annotations(alias: str, alert: Alert, names: tuple[str, ...], window: int,
                             grafana_url: str | None, value: str | None = None) -> dict[str, str]:
    """The annotations as templates (the value query unless `value` is given), the dashboard link, the
    user's annotations on top."""
    shown = query_template(VALUE, names) if value is None else value
    return finish_annotations(describe_stuck("{{ $labels.baseline }}", window, shown), alias, alert, names,
                              grafana_url)


def render_stuck_rule(alias: str, alert: Alert, names: tuple[str, ...], window: int,
                      grafana_url: str | None = None) -> dict[str, Any]:
    """The stuck-value alerting rule of a baseline (no `for`: see the module docstring)."""
    return {
        "alert": stuck_alert_name(alias),
        "expr": stuck_condition(alias, names, window),
        "labels": render_alert_labels(alias, alert),
        "annotations": render_stuck_annotations(alias, alert, names, window, grafana_url),
    }
