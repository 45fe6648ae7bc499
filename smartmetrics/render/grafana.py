"""Grafana from the config and the fitted state: baseline dashboards, a fleet overview and alert rules.

Built with Grafana's own grafana-foundation-sdk builders and written as JSON (dashboards) and file
provisioning YAML (alert rules, rendered by `grafana_alerts`, and the dashboard provider that loads
the dashboards) with sorted keys, so the same config and store give the same bytes. Every dashboard
reads from the Prometheus its `datasource` variable picks (`--datasource-uid` is only the default).
Each baseline dashboard has one template variable per series label (multi-select with All, chained);
its first panel is repeated per selected value of the innermost label, so that with one value of
each outer label every panel shows one series: the value, `yhat`, and the band drawn as the area
between `lower` and `upper` (a "fill below to" override), in the baseline's unit (`units`). A
baseline with a sustained-deviation alert also gets a panel of the mean over its window with the
mean's limits; its firing Prometheus alerts (`ALERTS`) are annotations, and a table lists which of
them fired in the time range (`alert_history_panel`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as builders_common
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from smartmetrics.adapters.store import load_store
from smartmetrics.config import Config
from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.state import BaselineState
from smartmetrics.render.calendar_marks import EVENT_ACTIVE, calendar_marks
from smartmetrics.render.grafana_alerts import FOLDER, render_alert_provisioning, to_plain
from smartmetrics.render.parts import (
    LOWER,
    SCORE,
    UPPER,
    VALUE,
    VALUE_PANEL_ID,
    YHAT,
    alert_name,
    dashboard_uid,
    render_yaml,
    score_threshold,
    series_label_names,
    write_files,
)
from smartmetrics.render.promql import RulesError, quote, selector
from smartmetrics.render.stuck_rules import stuck_alert_name, stuck_windows
from smartmetrics.render.sustained_rules import SIDES, MeanWindow, mean_windows, sustained_alert_name
from smartmetrics.render.units import PLAIN, baseline_unit

FLEET_UID = "smartmetrics-fleet"
ALERTS_FILE = "alerting/smartmetrics-alerts.yml"
RETRAINED = "smartmetrics_last_successful_retrain_timestamp_seconds"  # self-metrics read by name
FOLLOWS = "smartmetrics_follows_total"
AHEAD_YHAT, AHEAD_UPPER = "smartmetrics_yhat_ahead", "smartmetrics_yhat_upper_ahead"
PROVIDER_FILE = "dashboards/smartmetrics.yaml"
DASHBOARDS_PATH = "/etc/grafana/provisioning/dashboards"
"""Where Grafana finds the dashboard JSON files: the provider's own folder, when the `dashboards/`
folder written by `smartmetrics grafana` is mounted as Grafana's dashboard provisioning folder."""
DS = "${datasource}"  # every panel, query and annotation reads from the dashboard's datasource variable


def _ds(uid: str) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val="prometheus", uid=uid)


def datasource_variable(uid: str) -> dashboard.DatasourceVariable:
    """The Prometheus the dashboard reads from, `uid` selected until the user picks another."""
    return (dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
            .current(dm.VariableOption(selected=True, text=uid, value=uid)).multi(False).include_all(False))


def _nav_link() -> dashboard.DashboardLink:
    """A drop-down of every smartmetrics dashboard (by tag), keeping the time range."""
    return (dashboard.DashboardLink("smartmetrics").type(dm.DashboardLinkType.DASHBOARDS).tags([FOLDER])
            .as_dropdown(True).keep_time(True).include_vars(False).target_blank(False).icon("external link")
            .tooltip("").url(""))


def _query(ref: str, promql: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().ref_id(ref).expr(promql).legend_format(legend).range()


def _timeseries(uid: str, panel_id: int, title: str, pos: dm.GridPos) -> timeseries.Panel:
    """A time-series panel with a list legend below and a shared tooltip."""
    legend = (builders_common.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
              .placement(common.LegendPlacement.BOTTOM).calcs([]))
    tooltip = builders_common.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)
    return (timeseries.Panel().id(panel_id).title(title).datasource(_ds(uid)).grid_pos(pos)
            .legend(legend).tooltip(tooltip))


def series_selector(metric: str, alias: str, names: tuple[str, ...]) -> str:
    """`metric{baseline="alias", l1=~"$l1", ...}`: the series picked by the dashboard variables."""
    matchers = [f"baseline={quote(alias)}", *(f'{n}=~"${n}"' for n in names)]
    return metric + "{" + ", ".join(matchers) + "}"


def label_variable(alias: str, name: str, before: tuple[str, ...], uid: str) -> dashboard.QueryVariable:
    """A multi-select variable over one series label (All: any value), filtered by the variables before it."""
    query = f"label_values({series_selector(YHAT, alias, before)}, {name})"
    return (dashboard.QueryVariable(name).label(name).datasource(_ds(uid)).query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


def band_panel(alias: str, names: tuple[str, ...], uid: str, unit: str = PLAIN) -> timeseries.Panel:
    """Value, expected value, and the band as a filled area between its lower and upper edges; one
    panel per selected value of the innermost label (the fill pairs one `lower` with one `upper`)."""
    def sel(metric: str) -> str:
        return series_selector(metric, alias, names)

    band_edge = [dm.DynamicConfigValue("custom.lineWidth", 0), dm.DynamicConfigValue("custom.hideFrom",
                 {"legend": True, "tooltip": False, "viz": False})]
    fill = [dm.DynamicConfigValue("custom.fillBelowTo", "lower"), dm.DynamicConfigValue("custom.fillOpacity", 25),
            dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "green"})]
    title = " ".join(("Value and expected range", *(f"${n}" for n in names)))
    panel = _timeseries(uid, VALUE_PANEL_ID, title, dm.GridPos(h=10, w=24, x=0, y=0)).unit(unit)
    if names:
        panel = panel.repeat(names[-1]).repeat_direction("h")
    return (panel
            .with_target(_query("A", sel(VALUE), "value"))
            .with_target(_query("B", sel(YHAT), "expected"))
            .with_target(_query("C", sel(LOWER), "lower"))
            .with_target(_query("D", sel(UPPER), "upper"))
            .line_width(1).fill_opacity(0).span_nulls(False)
            .override_by_name("value", [dm.DynamicConfigValue("custom.lineWidth", 2),
                                        dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "blue"})])
            .override_by_name("expected", [dm.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [6, 4]}),
                                           dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "green"})])
            .override_by_name("lower", band_edge + [dm.DynamicConfigValue("color", {"mode": "fixed",
                                                                                    "fixedColor": "green"})])
            .override_by_name("upper", band_edge + fill))


def _threshold_steps(threshold: float) -> dashboard.ThresholdsConfig:
    steps = [dm.Threshold(value=None, color="green"), dm.Threshold(value=threshold, color="red")]
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def score_panels(alias: str, names: tuple[str, ...], uid: str, threshold: float) -> list[timeseries.Panel]:
    """The selected series' anomaly score with the alert threshold, and the baseline's top scores."""
    legend = " ".join(f"{{{{{n}}}}}" for n in names) or alias
    panels = []
    for i, (title, promql, name) in enumerate((
        ("Anomaly score (1 = band edge)", series_selector(SCORE, alias, names), legend),
        ("Top 10 anomaly scores in this baseline", f"topk(10, {SCORE}{{baseline={quote(alias)}}})", legend),
    )):
        style = builders_common.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        panels.append(_timeseries(uid, 2 + i, title, dm.GridPos(h=8, w=12, x=12 * i, y=10))
                      .min(0).fill_opacity(10).thresholds(_threshold_steps(threshold))
                      .thresholds_style(style).with_target(_query("A", promql, name)))
    return panels


def mean_panel(alias: str, names: tuple[str, ...], uid: str, window: MeanWindow,
               unit: str = PLAIN) -> timeseries.Panel:
    """The selected series' mean over the sustained-deviation window, between its limits (dashed)."""
    title = f"Mean over the last {format_duration(window.seconds)} and its normal range"
    mean = f"avg_over_time({series_selector(VALUE, alias, names)}{window.span})"
    panel = (_timeseries(uid, 4, title, dm.GridPos(h=8, w=24, x=0, y=18)).fill_opacity(0).unit(unit)
             .with_target(_query("A", mean, "mean")))
    limit_style = [dm.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [6, 4]}),
                   dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"})]
    for ref, side in zip("BC", window.sides):
        panel = (panel.with_target(_query(ref, series_selector(SIDES[side][1], alias, names), f"{side} limit"))
                 .override_by_name(f"{side} limit", limit_style))
    return panel


def render_baseline_dashboard(alias: str, names: tuple[str, ...], uid: str, threshold: float = 1.0,
                              window: MeanWindow | None = None, releases: str | None = None,
                              follows: bool = False, unit: str = PLAIN,
                              calendar: Sequence[tuple[str, str, str]] = (), ahead: Sequence[str] = ()) -> dict[str, Any]:
    """The dashboard of one baseline as a JSON-ready dict (a mean panel with a sustained-deviation window,
    the release markers as annotations when the baseline has them, the `calendar` marks
    (`calendar_marks`) as annotations (each names its event in its labels), and a forecast-ahead panel for its `ahead`
    offsets), reading from the Prometheus of its datasource variable, `uid` by default.

    The band jumps where a new model takes over, and where the daemon moved it between retrains (a
    followed level); both are annotations, so a step in the band is never a mystery."""
    board = (dashboard.Dashboard(f"smartmetrics: {alias}").uid(dashboard_uid(alias)).tags([FOLDER])
             .time("now-2d", "now").refresh("1m").timezone("utc")
             .description(f"Value, expected value and normal band of every series of baseline {alias}.")
             .link(_nav_link()).with_variable(datasource_variable(uid)))
    for i, name in enumerate(names):
        board = board.with_variable(label_variable(alias, name, names[:i], DS))
    board = board.with_panel(band_panel(alias, names, DS, unit))
    for panel in score_panels(alias, names, DS, threshold):
        board = board.with_panel(panel)
    if window is not None:
        board = board.with_panel(mean_panel(alias, names, DS, window, unit))
    board = board.with_panel(alert_history_panel(alias, names, DS, y=26 if window is not None else 18))
    if ahead:
        board = board.with_panel(ahead_panel(alias, names, DS, y=34 if window is not None else 26, unit=unit))
    marks = [("Firing alerts", firing_alerts(alias, names), "red"),
             ("Retrains", f"changes({selector(RETRAINED, alias)}[5m]) > 0", "blue")]
    if follows:
        marks.append(("Band followed a new level", f"increase({selector(FOLLOWS, alias)}[5m]) > 0", "orange"))
    if releases is not None:
        marks.append(("Releases", releases, "purple"))
    for name, expr, colour in [*marks, *calendar]:
        board = board.annotation(dashboard.AnnotationQuery().name(name).datasource(_ds(DS)).enable(True)
                                 .icon_color(colour).expr(expr))
    return to_plain(board.build())


def ahead_panel(alias: str, names: tuple[str, ...], uid: str, y: int, unit: str = PLAIN) -> timeseries.Panel:
    """The value beside `smartmetrics_yhat_ahead` and `_upper_ahead` as exported at each moment (what the
    forecast expects `ahead` later, per offset): the series a KEDA or HPA threshold reads."""
    def sel(metric: str) -> str:
        return series_selector(metric, alias, names)

    dashed = [dm.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [6, 4]})]
    title = "Forecast ahead (autoscaling): value now, expected value and upper edge ahead"
    return (_timeseries(uid, 6, title, dm.GridPos(h=8, w=24, x=0, y=y)).unit(unit).fill_opacity(0)
            .description("smartmetrics_yhat_ahead and smartmetrics_yhat_upper_ahead as exported now, for each "
                         "ahead offset: what a KEDA or HPA threshold on them sees before the load arrives.")
            .with_target(_query("A", sel(VALUE), "value"))
            .with_target(_query("B", sel(AHEAD_YHAT), "expected in {{ahead}}"))
            .with_target(_query("C", sel(AHEAD_UPPER), "upper in {{ahead}}"))
            .override_by_regexp("^upper in .*", dashed))


def firing_alerts(alias: str, names: tuple[str, ...]) -> str:
    """`ALERTS` of the baseline's Prometheus alerts while firing, for the series the variables pick
    (Grafana-managed alerts mark their panel by themselves)."""
    alerts = "|".join(f(alias) for f in (alert_name, stuck_alert_name, sustained_alert_name))
    matchers = ['alertstate="firing"', f'alertname=~"{alerts}"', f"baseline={quote(alias)}",
                *(f'{n}=~"${n}"' for n in names)]
    return "ALERTS{" + ", ".join(matchers) + "}"


def alert_history_panel(alias: str, names: tuple[str, ...], uid: str, y: int) -> table.Panel:
    """A table of the baseline's alerts that fired in the dashboard's time range, one row per alert
    and series: when it last fired and for how long in all (minutes firing, sampled every minute).

    Read from Prometheus' own `ALERTS` series rather than the daemon's alert history
    (`/api/v1/alerts`, with value, band and feedback): stock Grafana has no data source for an
    arbitrary JSON API without a plugin, while every Grafana that shows these dashboards already
    reads this Prometheus. `smartmetrics alerts` lists the rest."""
    alerts = firing_alerts(alias, names)
    by = ", ".join(("alertname", *names))
    queries = (("A", f"max by ({by}) (last_over_time(timestamp({alerts})[$__range:1m])) * 1000"),
               ("B", f"sum by ({by}) (count_over_time({alerts}[$__range:1m])) * 60"))
    panel = (table.Panel().id(5).title("Alert history (fired in the time range)").datasource(_ds(uid))
             .description("Which of this baseline's alerts fired in the time range, from Prometheus' ALERTS: "
                          "when each last fired and for how long in all. Value, band and on-call feedback: "
                          "smartmetrics alerts.")
             .grid_pos(dm.GridPos(h=8, w=24, x=0, y=y))
             .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {"Time": True},
                 "renameByName": {"Value #A": "last firing", "Value #B": "time firing"}}))
             .override_by_name("last firing", [dm.DynamicConfigValue("unit", "dateTimeAsIso")])
             .override_by_name("time firing", [dm.DynamicConfigValue("unit", "s")]))
    for ref, promql in queries:
        panel = panel.with_target(prometheus.Dataquery().ref_id(ref).expr(promql).instant()
                                  .format(pm.PromQueryFormat.TABLE))
    return panel


FLEET_PANELS = (
    ("Series by baseline", "sum by (baseline) (smartmetrics_series)", "{{baseline}}", "short"),
    ("Series by curve type", "sum by (curve_type) (smartmetrics_series)", "{{curve_type}}", "short"),
    ("Hours since the last successful retrain",
     f"(time() - {RETRAINED}) / 3600", "{{baseline}}", "h"),
    ("Forecast hours remaining", "smartmetrics_forecast_hours_remaining", "{{baseline}}", "h"),
    ("Bands that do not hold: lowest coverage since the retrain",
     "bottomk(10, smartmetrics_band_coverage)", "{{baseline}} {{instance}}", "percentunit"),
    ("Mean fit duration (last day)", ("increase(smartmetrics_fit_duration_seconds_sum[1d]) / "
                                      "increase(smartmetrics_fit_duration_seconds_count[1d])"), "{{baseline}}", "s"),
    ("Fits per hour by result", "sum by (baseline, result) (increase(smartmetrics_fits_total[1h]))",
     "{{baseline}} {{result}}", "short"),
    ("Fit failures per hour by reason",
     "sum by (baseline, reason) (increase(smartmetrics_fit_failures_total[1h]))", "{{baseline}} {{reason}}", "short"),
    ("Store errors per hour", "sum by (operation) (increase(smartmetrics_store_errors_total[1h]))",
     "{{operation}}", "short"),
    ("Source request errors per hour",
     "sum by (source, baseline) (increase(smartmetrics_source_request_errors_total[1h]))",
     "{{source}} {{baseline}}", "short"),
    ("Series settling after a release (band withdrawn)", "sum by (baseline) (smartmetrics_series_settling)",
     "{{baseline}}", "short"),
    ("Releases per hour", "sum by (baseline) (increase(smartmetrics_releases_total[1h]))", "{{baseline}}", "short"),
    ("Bands that followed a new level, per hour",
     f"sum by (baseline) (increase({FOLLOWS}[1h]))", "{{baseline}}", "short"),
    ("Source request duration (p90, last hour)", ("histogram_quantile(0.9, sum by (source, le) "
     "(rate(smartmetrics_source_request_duration_seconds_bucket[1h])))"), "{{source}}", "s"),
    ("Series held per baseline (each daemon its shard's share)", "sum by (baseline) (smartmetrics_owned_series)",
     "{{baseline}}", "short"),
    ("Daemons by shard", "count by (shard, shards) (smartmetrics_shard_info)", "shard {{shard}} of {{shards}}",
     "short"),
    ("Remote write: samples accepted per hour", "sum(increase(smartmetrics_remote_write_samples_total[1h]))",
     "accepted", "short"),
    ("Remote write: samples not delivered per hour",
     "sum(increase(smartmetrics_remote_write_samples_failed_total[1h]))", "not delivered", "short"),
    ("Remote write: requests per hour by status",
     "sum by (code) (increase(smartmetrics_remote_write_requests_total[1h]))", "{{code}}", "short"),
    ("Remote write: time since the last complete push",
     "time() - smartmetrics_remote_write_last_success_timestamp_seconds", "{{instance}}", "s"),
    ("Alerts recorded from Alertmanager per hour",
     "sum by (baseline) (increase(smartmetrics_alerts_recorded_total[1h]))", "{{baseline}}", "short"),
    ("Alert notifications received per hour",
     "sum by (baseline) (increase(smartmetrics_alerts_received_total[1h]))", "{{baseline}}", "short"),
    ("Webhook payloads refused per hour",
     "sum by (reason) (increase(smartmetrics_alert_payloads_rejected_total[1h]))", "{{reason}}", "short"),
    ("Series widened by on-call feedback", "sum by (baseline) (smartmetrics_feedback_adjustments)",
     "{{baseline}}", "short"),
    ("Alertmanager silence reads failed per hour", "sum(increase(smartmetrics_silence_sync_errors_total[1h]))",
     "failed reads", "short"),
    ("Calendar events now on (holidays, maintenance, expected changes)",
     f"sum by (baseline, kind, event) ({EVENT_ACTIVE}) > 0", "{{baseline}} {{kind}} {{event}}", "short"),
)


def render_fleet_dashboard(uid: str) -> dict[str, Any]:
    """The overview of the daemons' own health: fits, failures, freshness, store and source errors."""
    board = (dashboard.Dashboard("smartmetrics: fleet").uid(FLEET_UID).tags([FOLDER]).time("now-7d", "now")
             .refresh("1m").timezone("utc").description("Health of the smartmetrics daemons (self-metrics).")
             .link(_nav_link()).with_variable(datasource_variable(uid)))
    ready = (stat.Panel().id(1).title("Daemons ready").datasource(_ds(DS)).grid_pos(dm.GridPos(h=4, w=24, x=0, y=0))
             .reduce_options(builders_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .color_mode(common.BigValueColorMode.VALUE)
             .with_target(prometheus.Dataquery().ref_id("A").expr("sum(smartmetrics_ready)").instant()))
    board = board.with_panel(ready)
    for i, (title, promql, legend, unit) in enumerate(FLEET_PANELS):
        pos = dm.GridPos(h=8, w=12, x=12 * (i % 2), y=4 + 8 * (i // 2))
        board = board.with_panel(_timeseries(DS, i + 2, title, pos).unit(unit)
                                 .with_target(_query("A", promql, legend)))
    return to_plain(board.build())


def render_json(doc: Any) -> str:
    """Deterministic JSON: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def check_uid(uid: str) -> str:
    """A data source uid as Grafana accepts it (1-40 characters of letters, digits, `-`, `_`)."""
    import re

    if not re.match(r"^[A-Za-z0-9_-]{1,40}$", uid):
        raise RulesError(f"datasource uid {uid!r} must be 1-40 letters, digits, '-' or '_'")
    return uid


def write_grafana(config: Config, out: Any, datasource_uid: str,
                  grafana_url: str | None = None) -> tuple[list[Any], list[str]]:
    """Load the store, render the Grafana files and write them under `out`; (paths, store errors)."""
    states, errors = load_store(config.store.path)
    return write_files(out, render_grafana_files(config, states, datasource_uid, grafana_url)), errors


def render_grafana_files(config: Config, states: Mapping[str, BaselineState],
                         datasource_uid: str = "prometheus", grafana_url: str | None = None) -> dict[str, str]:
    """File name -> text: one dashboard per baseline, the fleet dashboard and the alert provisioning."""
    uid = check_uid(datasource_uid)
    names = series_label_names(config, states)
    stuck, sustained = stuck_windows(config, states), mean_windows(config, states)
    files = {}
    for alias in sorted(config.baselines):
        baseline = config.baselines[alias]
        board = render_baseline_dashboard(alias, names[alias], uid, score_threshold(baseline), sustained.get(alias),
                                          baseline.releases.expr if baseline.releases else None,
                                          follows=baseline.follow is not None, unit=baseline_unit(baseline),
                                          calendar=calendar_marks(alias, baseline), ahead=baseline.ahead)
        files[f"dashboards/{dashboard_uid(alias)}.json"] = render_json(board)
    files["dashboards/smartmetrics-fleet.json"] = render_json(render_fleet_dashboard(uid))
    files[PROVIDER_FILE] = render_yaml(render_dashboard_provider(), "# Generated by `smartmetrics grafana`: "
                                       "Grafana dashboard provisioning, loading the dashboards beside it.\n")
    header = ("# Generated by `smartmetrics grafana`: Grafana alert rule file provisioning.\n"
              "# Needs the recording rules of `smartmetrics rules` loaded in the Prometheus below.\n")
    provisioning = render_alert_provisioning(config, names, uid, grafana_url, stuck, sustained)
    files[ALERTS_FILE] = render_yaml(sort_keys(provisioning), header)
    return files


def render_dashboard_provider(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    """Grafana's dashboard provisioning (`apiVersion: 1, providers`): the JSON files under `path`
    into the smartmetrics folder, reloaded every minute, as files (edits in the UI are not kept)."""
    provider = {"name": FOLDER, "orgId": 1, "folder": FOLDER, "type": "file", "disableDeletion": False,
                "allowUiUpdates": False, "updateIntervalSeconds": 60,
                "options": {"path": path, "foldersFromFilesStructure": False}}
    return {"apiVersion": 1, "providers": [provider]}


def sort_keys(doc: Any) -> Any:
    """The same data with every mapping's keys sorted (for stable YAML)."""
    if isinstance(doc, dict):
        return {k: sort_keys(doc[k]) for k in sorted(doc)}
    if isinstance(doc, list):
        return [sort_keys(v) for v in doc]
    return doc

