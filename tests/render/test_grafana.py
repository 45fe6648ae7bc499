"""Grafana dashboards and alert provisioning: SDK types as the schema, golden bytes, equivalence with the
Prometheus alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import promql_parser
import pytest
import yaml
from grafana_foundation_sdk.models.alerting import Rule
from grafana_foundation_sdk.models.dashboard import Dashboard

from smartmetrics.app.cli import main
from smartmetrics.app.selfmetrics import SelfMetrics
from smartmetrics.config import Config, parse_config
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.render.grafana import ALERTS_FILE, render_grafana_files
from smartmetrics.render.grafana_alerts import to_plain
from smartmetrics.render.parts import dashboard_uid, score_threshold
from smartmetrics.render.promql import RulesError
from smartmetrics.render.rules import render_rule_files

BASELINES = {
    "inference_qps": {"expr": "sum by (model, tenant) (rate(requests_total[5m]))",
                      "alert": {"labels": {"team": "ml"}, "annotations": {"runbook_url": "https://r.example/q"}},
                      "ahead": ["15m", "1h"], "calendar": {"holidays": {"extra": ["2026-12-24"]}, "events": [
                          {"name": "backup", "cron": "0 2 * * 0", "duration": "2h"},
                          {"name": "sale", "kind": "expected_change", "start": "2026-11-27T00:00:00Z",
                           "end": "2026-11-28T00:00:00Z", "widen": 3, "direction": "up"},
                          {"name": "freeze", "expr": 'max(change_freeze{team="ml"})'}]}},
    "p99_latency": {"expr": "histogram_quantile(0.99, sum by (model, le) (rate(lat_bucket[5m])))",
                    "alert": {"direction": "up", "for": "5m", "min_abs_deviation": 0.05}},
    'odd "alias"': {"expr": "sum(rate(errors_total[5m]))", "alert": {"direction": "down", "labels": {"q": 'a"b\\c'}}},
    "raw": {"expr": "sm_labelled", "alert": {"for": "1m"}},
}
PROVISIONING_RULE_KEYS = {"uid", "title", "condition", "data", "dashboardUid", "panelId", "noDataState",
                          "execErrState", "for", "keepFiringFor", "annotations", "labels", "isPaused",
                          "notification_settings"}


def make_config() -> Config:
    return parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": BASELINES})


def band(labels: dict[str, str], stuck_after: int = 0, sustained: dict | None = None) -> SeriesBand:
    y = np.ones(2)
    return SeriesBand(labels, 0, 60, y, y, y, meta={"training": {"stuck_after": stuck_after, "sustained": sustained}})


LIMITS = {"window": 3600, "lower": 0.5, "upper": 4.0}
STATES = {"raw": BaselineState("raw", 0.0, (band({"job": "x", "baseline": "theirs"}, 1500, LIMITS),))}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render_grafana_files(make_config(), STATES, "prom-main", "https://grafana.example.com")


def dashboards(files: dict[str, str]) -> dict[str, dict]:
    return {name: json.loads(text) for name, text in files.items() if name.endswith(".json")}


def test_files_match_golden(files: dict[str, str], golden) -> None:
    for name, text in files.items():
        golden(f"grafana/{name}", text)


def test_same_input_same_bytes(files: dict[str, str]) -> None:
    assert render_grafana_files(make_config(), STATES, "prom-main", "https://grafana.example.com") == files


def test_dashboards_round_trip_through_the_sdk_types(files: dict[str, str]) -> None:
    boards = dashboards(files)
    assert len(boards) == len(BASELINES) + 1
    for name, doc in boards.items():
        assert to_plain(Dashboard.from_json(doc)) == doc, name


def test_round_trip_would_catch_a_field_grafana_does_not_know(files: dict[str, str]) -> None:
    doc = next(iter(dashboards(files).values()))
    doc["panelz"] = doc.pop("panels")
    assert to_plain(Dashboard.from_json(doc)) != doc


def test_baseline_panel_draws_the_band_between_lower_and_upper(files: dict[str, str]) -> None:
    doc = json.loads(files[f"dashboards/{dashboard_uid('inference_qps')}.json"])
    panel = doc["panels"][0]
    assert [t["legendFormat"] for t in panel["targets"]] == ["value", "expected", "lower", "upper"]
    assert all('model=~"$model", tenant=~"$tenant"' in t["expr"] for t in panel["targets"])
    upper = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "upper")
    props = {p["id"]: p.get("value") for p in upper["properties"]}
    assert props["custom.fillBelowTo"] == "lower" and props["custom.fillOpacity"] > 0
    names = [v["name"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert names == ["model", "tenant"]
    assert doc["templating"]["list"][2]["query"] == \
        'label_values(smartmetrics_yhat{baseline="inference_qps", model=~"$model"}, tenant)'
    score = doc["panels"][1]
    limit = score_threshold(make_config().baselines["inference_qps"])
    assert score["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == limit


def test_every_query_parses_as_promql(files: dict[str, str]) -> None:
    exprs = [t["expr"] for doc in dashboards(files).values() for p in doc["panels"] for t in p["targets"]]
    exprs += [a["expr"] for doc in dashboards(files).values() for a in doc.get("annotations", {}).get("list", [])
              if "expr" in a]
    exprs += [v["query"][len("label_values("):-1].rsplit(",", 1)[0]
              for doc in dashboards(files).values() for v in doc["templating"].get("list", [])
              if v["type"] == "query"]
    alerts = yaml.safe_load(files[ALERTS_FILE])
    exprs += [q["model"]["expr"] for r in alerts["groups"][0]["rules"] for q in r["data"] if "expr" in q["model"]]
    for text in exprs:
        promql_parser.parse(re.sub(r"\$\w+", "x", text.replace("$__range", "1d")))


def test_fleet_dashboard_shows_every_self_metric(files: dict[str, str]) -> None:
    text = files["dashboards/smartmetrics-fleet.json"]
    for family in SelfMetrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        assert family.name + suffix in text, family.name


def test_alert_provisioning_is_grafana_file_provisioning(files: dict[str, str]) -> None:
    doc = yaml.safe_load(files[ALERTS_FILE])
    assert doc["apiVersion"] == 1 and len(doc["groups"]) == 1
    group = doc["groups"][0]
    assert {"orgId", "name", "folder", "interval", "rules"} == set(group)
    for rule in group["rules"]:
        assert set(rule) <= PROVISIONING_RULE_KEYS
        rule = {k: v for k, v in rule.items() if k != "keepFiringFor"}  # newer than the SDK's types
        full = {**rule, "folderUID": group["folder"], "ruleGroup": group["name"], "orgID": group["orgId"]}
        assert to_plain(Rule.from_json(full)) == full
        assert {q["datasourceUid"] for q in rule["data"]} == {"prom-main", "__expr__"}


def test_grafana_alerts_are_equivalent_to_the_prometheus_alerts(files: dict[str, str]) -> None:
    config = make_config()
    prom = yaml.safe_load(render_rule_files(config, STATES, "https://grafana.example.com")["smartmetrics.rules.yml"])
    prom_alerts = {r["alert"]: r for g in prom["groups"] for r in g["rules"] if "alert" in r}
    grafana = {r["title"]: r for r in yaml.safe_load(files[ALERTS_FILE])["groups"][0]["rules"]}
    assert set(prom_alerts) == set(grafana) and {"RawAnomalyStuck", "RawAnomalySustained"} <= set(grafana)
    for name, rule in grafana.items():
        expected = prom_alerts[name]
        data = {q["refId"]: q["model"] for q in rule["data"]}
        assert rule["labels"] == expected["labels"]
        assert rule["annotations"]["dashboard"] == expected["annotations"]["dashboard"]
        assert rule["annotations"]["__panelId__"] == "1" and data["A"]["instant"] is True
        if name.endswith("Stuck"):  # Grafana applies the `== 0` as `changes < 1`, at once
            assert data[rule["condition"]]["conditions"][0]["evaluator"] == {"type": "lt", "params": [1]}
            assert expected["expr"].replace(" == 0\n", "\n", 1) == data["A"]["expr"] != expected["expr"]
            assert rule["for"] == "0s" and "for" not in expected
            assert rule["annotations"]["summary"] == expected["annotations"]["summary"]
            continue
        if name.endswith("Sustained"):  # the same query; each series it returns fires, at once
            assert data[rule["condition"]] == {"refId": "B", "type": "math", "expression": "is_number($A)"}
            assert data["A"]["expr"] == expected["expr"] and rule["for"] == "0s"
            assert rule["annotations"]["summary"] == expected["annotations"]["summary"]
            assert "upper limit {{ with $values.U }}" in rule["annotations"]["description"]
            continue
        threshold = data[rule["condition"]]
        assert threshold["type"] == "threshold" and threshold["expression"] == "A"
        limit = score_threshold(config.baselines[expected["labels"]["baseline"]])
        assert threshold["conditions"][0]["evaluator"] == {"type": "gt", "params": [limit]}
        cut = f" > {limit:g}"
        assert expected["expr"].replace(cut + "\n", "\n", 1).removesuffix(cut) == data["A"]["expr"]
        assert rule["for"] == expected["for"]


def test_stuck_rule_only_where_the_prometheus_rules_have_one() -> None:
    def rules(config: Config, states: dict[str, BaselineState]) -> list[dict]:
        return yaml.safe_load(render_grafana_files(config, states)[ALERTS_FILE])["groups"][0]["rules"]

    unfit = {"raw": BaselineState("raw", 0.0, (band({"job": "x"}),))}
    assert not any(r["title"].endswith("Stuck") for r in rules(make_config(), unfit))
    off = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}},
                        "baselines": {**BASELINES, "raw": {"expr": "sm_labelled", "alert": {"stuck": False}}}})
    assert not any(r["title"].endswith("Stuck") for r in rules(off, STATES))
    both = rules(make_config(), STATES)
    assert len({r["uid"] for r in both}) == len(both) == len(BASELINES) + 2
    assert all(len(r["uid"]) <= 40 for r in both)


def test_bad_datasource_uid_is_refused() -> None:
    with pytest.raises(RulesError, match="datasource uid"):
        render_grafana_files(make_config(), STATES, 'bad"uid')


def test_cli_writes_dashboards_and_provisioning(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sources": {"p": {"url": "http://127.0.0.1:9"}},
                                      "store": {"path": str(tmp_path / "models")},
                                      "baselines": {"qps": {"expr": "sum by (model) (x)"}}}))
    out = tmp_path / "grafana"
    assert main(["grafana", "--config", str(config), "--out", str(out), "--datasource-uid", "abc"]) == 0
    assert (out / ALERTS_FILE).exists()
    board = json.loads((out / "dashboards" / f"{dashboard_uid('qps')}.json").read_text())
    assert board["panels"][0]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert board["templating"]["list"][0]["current"]["value"] == "abc"  # the datasource variable's default


def test_release_markers_are_annotations_on_their_baseline_dashboard_only() -> None:
    marked = {**BASELINES, "p99_latency": {**BASELINES["p99_latency"],
                                           "releases": {"expr": "changes(deploy_generation[5m]) > 0"}}}
    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": marked})
    boards = dashboards(render_grafana_files(config, STATES, "prom-main"))
    annotations = boards[f"dashboards/{dashboard_uid('p99_latency')}.json"]["annotations"]["list"]
    releases = [a for a in annotations if a.get("name") == "Releases"]
    assert len(releases) == 1
    assert releases[0]["expr"] == "changes(deploy_generation[5m]) > 0"
    assert releases[0]["datasource"]["uid"] == "${datasource}" and releases[0]["enable"] is True
    other = boards[f"dashboards/{dashboard_uid('inference_qps')}.json"].get("annotations", {}).get("list", [])
    assert not [a for a in other if a.get("name") == "Releases"]


def test_retrains_and_follows_are_annotations_that_name_their_baseline() -> None:
    baselines = {**BASELINES, "raw": {**BASELINES["raw"], "follow": None}}
    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": baselines})
    boards = dashboards(render_grafana_files(config, STATES, "prom-main"))

    def marks(alias: str) -> dict[str, str]:
        annotations = boards[f"dashboards/{dashboard_uid(alias)}.json"]["annotations"]["list"]
        return {a["name"]: a["expr"] for a in annotations if "expr" in a}

    qps = marks("inference_qps")
    assert qps["Retrains"] == ('changes(smartmetrics_last_successful_retrain_timestamp_seconds'
                               '{baseline="inference_qps"}[5m]) > 0')
    assert qps["Band followed a new level"] == 'increase(smartmetrics_follows_total{baseline="inference_qps"}[5m]) > 0'
    assert 'baseline="odd \\"alias\\""' in marks('odd "alias"')["Retrains"]
    assert set(marks("raw")) == {"Firing alerts", "Retrains"}  # follow: null: the band never moves between retrains


def test_dashboards_take_their_datasource_from_a_variable(files: dict[str, str]) -> None:
    """Users pick their Prometheus on the dashboard; `--datasource-uid` is only the default choice."""
    for name, doc in dashboards(files).items():
        variables = doc["templating"]["list"]
        assert variables[0]["type"] == "datasource" and variables[0]["name"] == "datasource", name
        assert variables[0]["query"] == "prometheus" and variables[0]["current"]["value"] == "prom-main"
        refs = [p["datasource"] for p in doc["panels"]] + [t["datasource"] for p in doc["panels"]
                                                           for t in p["targets"] if "datasource" in t]
        refs += [v["datasource"] for v in variables[1:]] + [a["datasource"] for a in doc["annotations"].get("list", [])]
        assert refs and all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs), name


def test_label_variables_select_several_series_or_all(files: dict[str, str]) -> None:
    doc = json.loads(files[f"dashboards/{dashboard_uid('inference_qps')}.json"])
    labels = [v for v in doc["templating"]["list"] if v["type"] == "query"]
    assert [v["name"] for v in labels] == ["model", "tenant"]
    assert all(v["multi"] and v["includeAll"] and v["allValue"] == ".*" for v in labels)
    band = doc["panels"][0]  # one band panel per selected series of the innermost label, each with its fill
    assert band["repeat"] == "tenant" and band["repeatDirection"] == "h"
    assert "$tenant" in band["title"]


def test_units_from_the_config_or_the_metric_name() -> None:
    baselines = {"qps": {"expr": "sum by (model) (rate(requests_total[5m]))", "unit": "reqps"},
                 "latency": {"expr": "histogram_quantile(0.99, sum by (le) (rate(http_duration_seconds_bucket[5m])))"},
                 "traffic": {"expr": "sum(rate(net_sent_bytes_total[5m]))"},
                 "plain": {"expr": "sum(rate(errors_total[5m]))"}, "depth": {"expr": "max(queue_depth)"}}
    config = parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": baselines})
    boards = dashboards(render_grafana_files(config, {}, "prom-main"))
    for alias, unit in {"qps": "reqps", "latency": "s", "traffic": "Bps", "plain": "ops", "depth": "short"}.items():
        band_panel = boards[f"dashboards/{dashboard_uid(alias)}.json"]["panels"][0]
        assert band_panel["fieldConfig"]["defaults"]["unit"] == unit, alias


def test_firing_alerts_are_annotations_on_their_baseline_dashboard(files: dict[str, str]) -> None:
    doc = json.loads(files[f"dashboards/{dashboard_uid('raw')}.json"])
    marks = {a["name"]: a for a in doc["annotations"]["list"] if "expr" in a}
    firing = marks["Firing alerts"]
    assert firing["expr"] == ('ALERTS{alertstate="firing", alertname=~"RawAnomaly|RawAnomalyStuck|RawAnomalySustained", '
                              'baseline="raw", exported_baseline=~"$exported_baseline", job=~"$job"}')
    assert firing["iconColor"] == "red" and firing["enable"] is True


def test_grafana_alerts_keep_firing_like_the_prometheus_alerts(files: dict[str, str]) -> None:
    """Grafana's provisioning field is `keepFiringFor` (Prometheus: `keep_firing_for`), a duration string."""
    prom = yaml.safe_load(render_rule_files(make_config(), STATES)["smartmetrics.rules.yml"])
    prom_alerts = {r["alert"]: r for g in prom["groups"] for r in g["rules"] if "alert" in r}
    grafana = {r["title"]: r for r in yaml.safe_load(files[ALERTS_FILE])["groups"][0]["rules"]}
    kept = [name for name, rule in prom_alerts.items() if "keep_firing_for" in rule]
    assert kept
    for name, rule in grafana.items():
        assert rule.get("keepFiringFor") == prom_alerts[name].get("keep_firing_for"), name


def test_dashboard_provider_loads_the_dashboards_beside_it(files: dict[str, str]) -> None:
    doc = yaml.safe_load(files["dashboards/smartmetrics.yaml"])
    assert doc["apiVersion"] == 1 and len(doc["providers"]) == 1
    provider = doc["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == "smartmetrics"
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    assert {"name", "orgId", "disableDeletion", "allowUiUpdates", "updateIntervalSeconds"} <= set(provider)


def test_alert_history_is_a_table_of_the_baselines_alerts_from_prometheus(files: dict[str, str]) -> None:
    doc = json.loads(files[f"dashboards/{dashboard_uid('raw')}.json"])
    (table,) = [p for p in doc["panels"] if p["type"] == "table"]
    assert table["title"].startswith("Alert history") and "ALERTS" in table["description"]
    exprs = {t["refId"]: t["expr"] for t in table["targets"]}
    alerts = ('ALERTS{alertstate="firing", alertname=~"RawAnomaly|RawAnomalyStuck|RawAnomalySustained", '
              'baseline="raw", exported_baseline=~"$exported_baseline", job=~"$job"}')
    by = "alertname, exported_baseline, job"
    assert exprs == {"A": f"max by ({by}) (last_over_time(timestamp({alerts})[$__range:1m])) * 1000",
                     "B": f"sum by ({by}) (count_over_time({alerts}[$__range:1m])) * 60"}
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
    renamed = table["transformations"][1]["options"]["renameByName"]
    assert renamed == {"Value #A": "last firing", "Value #B": "time firing"}
    units = {o["matcher"]["options"]: o["properties"][0]["value"] for o in table["fieldConfig"]["overrides"]}
    assert units == {"last firing": "dateTimeAsIso", "time firing": "s"}
    others = [p for d in dashboards(files).values() for p in d["panels"] if p["type"] == "table"]
    assert len(others) == len(BASELINES)  # one per baseline dashboard, none on the fleet's
    assert table["gridPos"]["y"] >= max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in doc["panels"] if p is not table)


def test_a_baseline_dashboard_annotates_its_calendar_and_shows_its_forecast_ahead(files: dict[str, str]) -> None:
    boards = dashboards(files)
    qps = boards[f"dashboards/{dashboard_uid('inference_qps')}.json"]
    marks = {a["name"]: a for a in qps["annotations"]["list"]}
    active = 'smartmetrics_calendar_event_active{baseline="inference_qps", kind="%s", event!~"freeze"} == 1'  # freeze: its expr
    assert marks["Holidays"]["expr"] == active % "holiday"
    assert marks["Maintenance windows"]["expr"] == active % "maintenance"
    assert marks["Expected changes"]["expr"] == active % "expected_change"
    assert marks["freeze (maintenance)"]["expr"] == '(max(change_freeze{team="ml"})) != 0'
    ahead = [p for p in qps["panels"] if p["title"].startswith("Forecast ahead")]
    assert [t["expr"].split("{")[0] for t in ahead[0]["targets"]] == [
        "smartmetrics:value", "smartmetrics_yhat_ahead", "smartmetrics_yhat_upper_ahead"]
    for name, board in boards.items():
        if name.startswith("dashboards/sm-") and "inference_qps" not in name:
            assert not any(p["title"].startswith("Forecast ahead") for p in board["panels"])
            assert not any("calendar" in a["expr"] for a in board["annotations"]["list"] if "expr" in a)
