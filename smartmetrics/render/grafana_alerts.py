"""Grafana-managed alert rules from the config and the fitted state, as file provisioning.

The Grafana-managed alert of a baseline asks Prometheus the same condition as the Prometheus alert
(it needs the recording rules of `smartmetrics rules` loaded) and applies the same threshold, `for`
and `keep_firing_for` (the provisioning field `keepFiringFor`, which a Grafana older than it ignores);
so do its stuck-value and sustained-deviation alerts, where the rules have them. Each rule
has a stable uid derived from its baseline's dashboard uid and links to that dashboard's value panel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from grafana_foundation_sdk.builders import alerting, expr, prometheus
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from smartmetrics.config import Config
from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.firing import for_seconds
from smartmetrics.render.parts import (
    LOWER,
    UPPER,
    VALUE,
    VALUE_PANEL_ID,
    _on,
    alert_condition,
    alert_name,
    check_grafana_url,
    dashboard_link,
    dashboard_uid,
    keep_firing_seconds,
    render_alert_labels,
    score_threshold,
)
from smartmetrics.render.promql import selector
from smartmetrics.render.stuck_rules import render_stuck_annotations, stuck_alert_name, stuck_condition
from smartmetrics.render.sustained_rules import (
    SIDES,
    MeanWindow,
    render_sustained_annotations,
    sustained_alert_name,
    sustained_condition,
)

FOLDER = "smartmetrics"  # the Grafana folder, rule group and dashboard tag of everything generated


def to_plain(obj: Any) -> Any:
    """An SDK object as plain JSON data (dicts, lists, numbers, strings)."""
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def _instant(ref: str, promql: str, uid: str) -> alerting.Query:
    model = prometheus.Dataquery().ref_id(ref).expr(promql).instant()
    return (alerting.Query(ref).datasource_uid(uid).model(model)
            .relative_time_range(alerting_range(600)))


def alerting_range(seconds: int) -> Any:
    """The relative time range of an alert query (the last `seconds` up to now)."""
    from grafana_foundation_sdk.models.alerting import RelativeTimeRange

    return RelativeTimeRange(from_val=seconds, to=0)


def _value_of(ref: str, fmt: str = "%.4g", missing: str = "") -> str:
    """A Go template showing the value of the rule's query `ref` (or `missing` when it has none).

    >>> _value_of("V")
    '{{ with $values.V }}{{ printf "%.4g" .Value }}{{ end }}'
    >>> _value_of("U", missing="none")
    '{{ with $values.U }}{{ printf "%.4g" .Value }}{{ else }}none{{ end }}'
    """
    end = f"{{{{ else }}}}{missing}{{{{ end }}}}" if missing else "{{ end }}"
    return f'{{{{ with $values.{ref} }}}}{{{{ printf "{fmt}" .Value }}}}' + end


def _expression(ref: str, model: Any) -> alerting.Query:
    """A server-side expression step of the rule (`__expr__`), over the same range as the queries."""
    return alerting.Query(ref).datasource_uid("__expr__").model(model).relative_time_range(alerting_range(600))


def _on_value_labels(metric: str, alias: str, names: tuple[str, ...]) -> str:
    """A band metric carried onto the value's label set, so Grafana pairs it with the alert instance."""
    return f"0 * {selector(VALUE, alias)} + {_on(names)} {selector(metric, alias)}"


def render_alert_rule(alias: str, config: Config, names: tuple[str, ...], uid: str,
                      grafana_url: str | None = None) -> dict[str, Any]:
    """The Grafana-managed twin of a baseline's Prometheus alert (provisioning form of one rule)."""
    alert, limit = config.baselines[alias].alert, score_threshold(config.baselines[alias])
    annotations = {
        "summary": "{{ $labels.baseline }} is outside its expected range",
        "description": (f"Value {_value_of('V')} is outside the expected range {_value_of('L')} to "
                        f"{_value_of('U')}; anomaly score {_value_of('A', '%.2f')}."),
        "baseline": "{{ $labels.baseline }}",
        "__dashboardUid__": dashboard_uid(alias),
        "__panelId__": str(VALUE_PANEL_ID),
    }
    if grafana_url:
        annotations["dashboard"] = dashboard_link(check_grafana_url(grafana_url), alias, names)
    annotations.update(alert.annotations)
    rule = (alerting.Rule(alert_name(alias)).uid(alert_uid(alias)).condition("B")
            .with_query(_instant("A", alert_condition(alias, alert, names), uid))
            .with_query(_threshold("B", "A", "gt", limit))
            .with_query(_instant("V", selector(VALUE, alias), uid))
            .with_query(_instant("L", _on_value_labels(LOWER, alias, names), uid))
            .with_query(_instant("U", _on_value_labels(UPPER, alias, names), uid)))
    baseline = config.baselines[alias]
    return _provisioned(rule, for_seconds(baseline), render_alert_labels(alias, alert), annotations,
                        keep_firing_seconds(baseline))


def render_stuck_alert_rule(alias: str, config: Config, names: tuple[str, ...], window: int, uid: str,
                            grafana_url: str | None = None) -> dict[str, Any]:
    """The Grafana-managed twin of a baseline's stuck-value alert: the same query without its `== 0`,
    which Grafana applies as a threshold (changes below 1), and no `for` (the window is the duration)."""
    alert = config.baselines[alias].alert
    annotations = {"__dashboardUid__": dashboard_uid(alias), "__panelId__": str(VALUE_PANEL_ID),
                   **render_stuck_annotations(alias, alert, names, window, grafana_url, value=_value_of("V"))}
    rule = (alerting.Rule(stuck_alert_name(alias)).uid(stuck_alert_uid(alias)).condition("B")
            .with_query(_instant("A", stuck_condition(alias, names, window, compare=False), uid))
            .with_query(_threshold("B", "A", "lt", 1))
            .with_query(_instant("V", selector(VALUE, alias), uid)))
    return _provisioned(rule, 0, render_alert_labels(alias, alert), annotations)


def render_sustained_alert_rule(alias: str, config: Config, names: tuple[str, ...], window: MeanWindow, uid: str,
                                grafana_url: str | None = None) -> dict[str, Any]:
    """The Grafana-managed twin of a baseline's sustained-deviation alert: the same query, which returns
    only the series whose mean has left its limits (the limits are per series, so no threshold step
    can stand in for the comparison); every number it returns fires, at once."""
    alert = config.baselines[alias].alert
    shown = {"mean": _value_of("A"), **{side: _value_of(side[0].upper(), missing="none") for side in window.sides}}
    annotations = {"__dashboardUid__": dashboard_uid(alias), "__panelId__": str(VALUE_PANEL_ID),
                   **render_sustained_annotations(alias, alert, names, window, grafana_url, shown)}
    rule = (alerting.Rule(sustained_alert_name(alias)).uid(sustained_alert_uid(alias)).condition("B")
            .with_query(_instant("A", sustained_condition(alias, names, window), uid))
            .with_query(_expression("B", expr.TypeMath().ref_id("B").expression("is_number($A)"))))
    for side in window.sides:
        rule = rule.with_query(_instant(side[0].upper(), _on_value_labels(SIDES[side][1], alias, names), uid))
    return _provisioned(rule, 0, render_alert_labels(alias, alert), annotations,
                        keep_firing_seconds(config.baselines[alias]))


def _threshold(ref: str, source: str, kind: str, limit: float) -> alerting.Query:
    """A server-side expression step: `source` compared with `limit` (`gt` or `lt`)."""
    model = expr.TypeThreshold().ref_id(ref).expression(source).conditions([
        expr.ExprTypeThresholdConditions().evaluator(
            expr.ExprTypeThresholdConditionsEvaluator().type(kind).params([limit]))])
    return _expression(ref, model)


def _provisioned(rule: alerting.Rule, for_seconds: float, labels: dict[str, str],
                 annotations: dict[str, str], keep_seconds: float = 0) -> dict[str, Any]:
    """A rule with the settings every smartmetrics alert shares, in its provisioning form; `keepFiringFor`
    (as Prometheus' `keep_firing_for`) is added beside the SDK's fields, which do not have it yet."""
    rule = (rule.for_val(format_duration(for_seconds)).no_data_state("OK").exec_err_state("Error")
            .labels(labels).annotations(dict(sorted(annotations.items())))
            .is_paused(False).folder_uid(FOLDER).rule_group(FOLDER).org_id(1))
    plain = to_plain(rule.build())
    for key in ("folderUID", "ruleGroup", "orgID"):  # group-level in a provisioning file
        plain.pop(key)
    if keep_seconds:
        plain["keepFiringFor"] = format_duration(keep_seconds)
    return plain


def alert_uid(alias: str) -> str:
    """The uid of a baseline's Grafana alert rule (derived from its dashboard uid)."""
    return "a" + dashboard_uid(alias)[1:]


def stuck_alert_uid(alias: str) -> str:
    """The uid of a baseline's Grafana stuck-value alert rule (as long as its dashboard uid).

    >>> stuck_alert_uid("inference_qps"), alert_uid("inference_qps")
    ('as-inference_qps-932923f0', 'am-inference_qps-932923f0')
    """
    return "as" + dashboard_uid(alias)[2:]


def sustained_alert_uid(alias: str) -> str:
    """The uid of a baseline's Grafana sustained-deviation alert rule (as long as its dashboard uid).

    >>> sustained_alert_uid("inference_qps")
    'ad-inference_qps-932923f0'
    """
    return "ad" + dashboard_uid(alias)[2:]


def render_alert_provisioning(config: Config, names: Mapping[str, tuple[str, ...]], uid: str,
                              grafana_url: str | None = None, stuck: Mapping[str, int] | None = None,
                              sustained: Mapping[str, MeanWindow] | None = None) -> dict[str, Any]:
    """The file provisioning document: `apiVersion: 1` and one group holding every baseline's rule
    (and its stuck-value rule for the baselines in `stuck`, alias -> window in seconds, and its
    sustained-deviation rule for those in `sustained`)."""
    rules = []
    for alias in sorted(config.baselines):
        rules.append(render_alert_rule(alias, config, names[alias], uid, grafana_url))
        if stuck and stuck.get(alias):
            rules.append(render_stuck_alert_rule(alias, config, names[alias], stuck[alias], uid, grafana_url))
        if sustained and alias in sustained:
            rules.append(render_sustained_alert_rule(alias, config, names[alias], sustained[alias], uid,
                                                     grafana_url))
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": FOLDER, "folder": FOLDER, "interval": "1m",
                                         "rules": rules}]}
