"""The sustained-deviation alert of a baseline: the mean over a trailing window leaves its normal range.

A sparse counter or a bursty gauge (curve types intermittent and noisy) needs a point band so wide
that a burst of errors or a shift by a few typical values stays inside it point by point, though the
hour as a whole is unlike any hour before (see `smartmetrics.engine.sustained`). The fit stores per series
`training.sustained` (`window` seconds, `lower`, `upper`; either limit may be None), the daemon
exports the limits as `smartmetrics_mean_upper` and `smartmetrics_mean_lower`, and each baseline
whose stored series have any gets one more alerting rule, e.g. for W = 1h at a 5m step:

    alert QpsAnomalySustained
      (
        avg_over_time(smartmetrics:value{baseline="qps"}[1h:5m])       the mean over W...
        > on(baseline, model) smartmetrics_mean_upper{baseline="qps"}     ... above its upper limit
      or
        avg_over_time(smartmetrics:value{baseline="qps"}[1h:5m])
        < on(baseline, model) smartmetrics_mean_lower{baseline="qps"}     ... or below its lower one
      )
      and on(baseline, model) count_over_time(smartmetrics:value{baseline="qps"}[1h:5m]) >= 6
      and on(baseline, model) smartmetrics:value{baseline="qps"}          present now

W is the largest stored window of the baseline, rounded up to a whole minute (the window follows
from the step, so it is the same for every series of a baseline). The mean is taken over a subquery
at the series' step, not over the raw samples of the recording rule: so it averages the same grid
the fit learned its limits from (and the backtest replays), whatever the rule evaluation interval.
Only the sides that `alert.direction` allows and that some stored series has a limit for are
rendered; with two, the parentheses matter, since `and` binds tighter than `or` and without them
the guards would only apply to the second side.

The guards, each caught by a generated promtool case when left out:
- `count_over_time(...) >= N`, N half the window's expected samples (at least 2), as the fit and the
  backtest ask: `avg_over_time` of a series that has just appeared (or of rules just loaded) is the
  mean of its first few samples, and a gappy window says little either.
- present now: the subquery keeps seeing the samples before a series disappeared, so without it the
  alert would fire for up to W/2 after the series is gone.
The limits' join keeps only series with limits and a current band.

No `for`: the window already is the duration. `keep_firing_for` is the anomaly alert's, so a mean
that hovers around its limit during one incident raises one alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smartmetrics.adapters.exporter import MEAN_LOWER_METRIC, MEAN_UPPER_METRIC, stored_mean_limits
from smartmetrics.config import Alert, Baseline, Config
from smartmetrics.engine.durations import format_duration, whole_minutes
from smartmetrics.engine.state import BaselineState
from smartmetrics.engine.sustained import min_points
from smartmetrics.render.parts import (
    VALUE,
    _on,
    alert_name,
    finish_annotations,
    keep_firing,
    query_template,
    render_alert_labels,
)
from smartmetrics.render.promql import selector

MEAN_UPPER, MEAN_LOWER = MEAN_UPPER_METRIC[0], MEAN_LOWER_METRIC[0]
SIDES = {"upper": (">", MEAN_UPPER), "lower": ("<", MEAN_LOWER)}
"""Per side of the normal range: how the mean compares with the limit to leave it, and the limit's metric."""
ALLOWED = {"both": ("upper", "lower"), "up": ("upper",), "down": ("lower",)}


@dataclass(frozen=True)
class MeanWindow:
    """What a baseline's sustained-deviation rule takes from the store.

    >>> MeanWindow(3600, 300, ("upper",)).points, MeanWindow(10800, 3600, ("lower",)).points
    (6, 2)
    """

    seconds: int  # W: the largest stored window, rounded up to a minute
    step: int  # the subquery's resolution: the series' step
    sides: tuple[str, ...]  # "upper" and/or "lower", in that order

    @property
    def span(self) -> str:
        """The subquery range the mean is taken over: `[W:step]`.

        >>> MeanWindow(3600, 300, ("upper",)).span
        '[1h:5m]'
        """
        return f"[{format_duration(self.seconds)}:{format_duration(self.step)}]"

    @property
    def points(self) -> int:
        """N: the samples the window must hold, half of those expected (at least 2), as the fit asks."""
        return min_points(self.seconds, self.step)


def sustained_alert_name(alias: str) -> str:
    """The sustained-deviation alert of a baseline: its anomaly alert's name plus `Sustained`.

    >>> sustained_alert_name("inference_qps")
    'InferenceQpsAnomalySustained'
    """
    return alert_name(alias) + "Sustained"


def mean_window(state: BaselineState | None, direction: str = "both") -> MeanWindow | None:
    """The rule's window, step and sides from the stored limits that `direction` lets alert; None when
    no stored series has such a limit.

    >>> from smartmetrics.engine.state import SeriesBand
    >>> def band(limits): return SeriesBand({}, 0, 300, [], [], [], meta={"training": {"sustained": limits}})
    >>> state = BaselineState("q", 0.0, (band({"window": 3601, "lower": None, "upper": 2.0}), band(None)))
    >>> mean_window(state), mean_window(state, "down")
    (MeanWindow(seconds=3660, step=300, sides=('upper',)), None)
    """
    if state is None:
        return None
    allowed = ALLOWED[direction]
    taking_part = [(band.step, limits) for band in state.series
                   if (limits := stored_mean_limits(band.meta)) is not None
                   and any(getattr(limits, side) is not None for side in allowed)]
    if not taking_part:
        return None
    sides = tuple(side for side in allowed if any(getattr(limits, side) is not None for _, limits in taking_part))
    longest = max(limits.window for _, limits in taking_part)
    return MeanWindow(whole_minutes(longest), max(step for step, _ in taking_part), sides)


def mean_windows(config: Config, states: Mapping[str, BaselineState]) -> dict[str, MeanWindow]:
    """Per baseline whose alert has `sustained` on and whose stored series have limits it may alert on."""
    windows = {alias: mean_window(states.get(alias), b.alert.direction)
               for alias, b in config.baselines.items() if b.alert.sustained}
    return {alias: w for alias, w in windows.items() if w is not None}


def sustained_condition(alias: str, names: tuple[str, ...], window: MeanWindow) -> str:
    """The series whose mean over the window has left its limits, as the module docstring explains."""
    on, value, span = _on(names), selector(VALUE, alias), window.span
    beyond = [f"avg_over_time({value}{span})\n{SIDES[side][0]} {on} {selector(SIDES[side][1], alias)}"
              for side in window.sides]
    left = beyond[0] if len(beyond) == 1 else "(\n" + "\nor\n".join(_indent(b) for b in beyond) + "\n)"
    parts = [left, f"count_over_time({value}{span}) >= {window.points}", value]
    return f"\nand {on}\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))


def describe_sustained(baseline: str, window: MeanWindow, shown: Mapping[str, str]) -> dict[str, str]:
    """Summary, description, mean and baseline, with `baseline`, the `mean` and each side's limit as
    `shown` gives them (templates in the rule, their rendered values in the promtool cases)."""
    w = format_duration(window.seconds)
    limits = ", ".join(f"{side} limit {shown[side]}" for side in window.sides)
    return {
        "summary": f"{baseline}: the mean over the last {w} left its normal range",
        "description": (f"The mean over the last {w} is {shown['mean']}, outside the range this series' "
                        f"means normally keep ({limits}): a sustained shift or a burst, though each single "
                        "value may be inside the band."),
        "mean": shown["mean"],
        "baseline": baseline,
    }


def render_sustained_annotations(alias: str, alert: Alert, names: tuple[str, ...], window: MeanWindow,
                                 grafana_url: str | None, shown: Mapping[str, str] | None = None
                                 ) -> dict[str, str]:
    """The annotations as templates, the dashboard link, the user's annotations on top. `shown` gives
    the templates of the `mean` and of each side's limit (default: `$value` and a query of the limit's
    metric, `none` for a series without that limit)."""
    if shown is None:
        shown = {"mean": '{{ $value | printf "%.4g" }}',
                 **{side: query_template(SIDES[side][1], names, missing="none") for side in window.sides}}
    out = describe_sustained("{{ $labels.baseline }}", window, shown)
    return finish_annotations(out, alias, alert, names, grafana_url)


def render_sustained_rule(alias: str, baseline: Baseline, names: tuple[str, ...], window: MeanWindow,
                          grafana_url: str | None = None) -> dict[str, Any]:
    """The sustained-deviation alerting rule of a baseline (no `for`: see the module docstring)."""
    return {
        "alert": sustained_alert_name(alias),
        "expr": sustained_condition(alias, names, window),
        **keep_firing(baseline),
        "labels": render_alert_labels(alias, baseline.alert),
        "annotations": render_sustained_annotations(alias, baseline.alert, names, window, grafana_url),
    }
