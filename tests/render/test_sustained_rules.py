"""The sustained-deviation alert: rendered only when enabled and fitted, its window and sides, the
precedence of its `or`, the Grafana twin, and promtool as the judge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import promql_parser
import pytest
import yaml

from smartmetrics.config import Config, parse_config
from smartmetrics.engine.durations import parse_duration
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.render import sustained_rules
from smartmetrics.render.grafana import ALERTS_FILE, render_grafana_files
from smartmetrics.render.grafana_alerts import sustained_alert_uid
from smartmetrics.render.parts import write_files
from smartmetrics.render.rules import RULES_FILE, TESTS_FILE, render_rule_files
from smartmetrics.render.sustained_rules import MeanWindow, mean_window, mean_windows, sustained_alert_name

GRAFANA = "https://grafana.example.com"


def limits(lower: object = 0.5, upper: object = 4.0, window: object = 3600) -> dict:
    return {"window": window, "lower": lower, "upper": upper}


def band(labels: dict[str, str], sustained: object = None, step: int = 300) -> SeriesBand:
    y = np.array([1.0, 2.0])
    return SeriesBand(labels, 0, step, y, y - 1, y + 1, meta={"training": {"sustained": sustained}})


def state(alias: str, *sustained: object, step: int = 300) -> BaselineState:
    return BaselineState(alias, 0.0, tuple(band({"model": f"m{i}"}, s, step) for i, s in enumerate(sustained)))


def config_of(**baselines: dict) -> Config:
    """One baseline per keyword, `sum by (model) (x)` with the given options (`alert` among them)."""
    full = {alias: {"expr": "sum by (model) (x)", **options} for alias, options in baselines.items()}
    return parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": full})


def alert_config(**alerts: dict) -> Config:
    """One baseline per keyword with these `alert` options."""
    return config_of(**{alias: {"alert": alert} for alias, alert in alerts.items()})


def alerts_of(files: dict[str, str]) -> dict[str, dict]:
    doc = yaml.safe_load(files[RULES_FILE])
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize(("stored", "direction", "expected"), [
    ((limits(),), "both", MeanWindow(3600, 300, ("upper", "lower"))),
    ((limits(),), "up", MeanWindow(3600, 300, ("upper",))),
    ((limits(),), "down", MeanWindow(3600, 300, ("lower",))),
    ((limits(lower=None), limits(upper=None, window=3601)), "both", MeanWindow(3660, 300, ("upper", "lower"))),
    ((limits(lower=None), limits(upper=None, window=7200)), "up", MeanWindow(3600, 300, ("upper",))),
    ((limits(lower=None), None), "both", MeanWindow(3600, 300, ("upper",))),
    ((limits(lower=None),), "down", None),  # a sparse counter has no lower limit to fall below
    ((None, {}, limits(None, None), limits(3, 2), limits(window=0), limits("1", float("nan"))), "both", None),
])
def test_window_and_sides_come_from_the_stored_limits_direction_allows(stored: tuple, direction: str,
                                                                        expected: MeanWindow | None) -> None:
    assert mean_window(state("q", *stored), direction) == expected


def test_the_points_needed_are_half_the_windows_samples_as_the_fit_asks() -> None:
    assert [MeanWindow(3600, s, ("upper",)).points for s in (60, 300, 420, 1800, 3600)] == [30, 6, 4, 2, 2]


def test_rule_only_when_enabled_and_a_fitted_series_has_limits() -> None:
    config = alert_config(on={}, off={"sustained": False}, none={}, unfitted={}, down={"direction": "down"})
    states = {"on": state("on", None, limits()), "off": state("off", limits()), "none": state("none", None),
              "down": state("down", limits(lower=None))}
    assert mean_windows(config, states) == {"on": MeanWindow(3600, 300, ("upper", "lower"))}
    alerts = alerts_of(render_rule_files(config, states))
    assert {n for n in alerts if n.endswith("Sustained")} == {sustained_alert_name("on")} == {"OnAnomalySustained"}
    assert not any(n.endswith("Sustained") for n in alerts_of(render_rule_files(config, {})))


def test_rule_text_labels_and_annotations() -> None:
    config = alert_config(qps={"severity": "page", "labels": {"team": "ml"}, "annotations": {"runbook": "r"}})
    rule = alerts_of(render_rule_files(config, {"qps": state("qps", limits())}, GRAFANA))["QpsAnomalySustained"]
    main = alerts_of(render_rule_files(config, {}))["QpsAnomaly"]
    assert rule["expr"] == (
        "(\n"
        '  avg_over_time(smartmetrics:value{baseline="qps"}[1h:5m])\n'
        '  > on(baseline, model) smartmetrics_mean_upper{baseline="qps"}\n'
        "or\n"
        '  avg_over_time(smartmetrics:value{baseline="qps"}[1h:5m])\n'
        '  < on(baseline, model) smartmetrics_mean_lower{baseline="qps"}\n'
        ")\n"
        "and on(baseline, model)\n"
        'count_over_time(smartmetrics:value{baseline="qps"}[1h:5m]) >= 6\n'
        "and on(baseline, model)\n"
        'smartmetrics:value{baseline="qps"}')
    assert "for" not in rule and rule["keep_firing_for"] == main["keep_firing_for"] == "2h"
    assert rule["labels"] == main["labels"] == {"baseline": "qps", "severity": "page", "team": "ml"}
    notes = rule["annotations"]
    assert notes["summary"] == "{{ $labels.baseline }}: the mean over the last 1h left its normal range"
    assert notes["mean"] == '{{ $value | printf "%.4g" }}' and notes["mean"] in notes["description"]
    assert '(upper limit {{ with printf "smartmetrics_mean_upper{baseline=%q,model=%q}"' in notes["description"]
    assert notes["description"].count("{{ else }}none{{ end }}") == 2
    assert notes["runbook"] == "r" and "/d/sm-qps-" in notes["dashboard"]


@pytest.mark.parametrize(("direction", "kept", "left_out"), [
    ("up", '> on(baseline, model) smartmetrics_mean_upper{baseline="q"}', "smartmetrics_mean_lower"),
    ("down", '< on(baseline, model) smartmetrics_mean_lower{baseline="q"}', "smartmetrics_mean_upper"),
])
def test_one_side_needs_no_parentheses(direction: str, kept: str, left_out: str) -> None:
    rule = alerts_of(render_rule_files(alert_config(q={"direction": direction}), {"q": state("q", limits())}))
    expr = rule["QAnomalySustained"]["expr"]
    assert kept in expr and left_out not in expr and "or" not in expr.split() and not expr.startswith("(")
    assert left_out.rsplit("_", 1)[1] + " limit" not in rule["QAnomalySustained"]["annotations"]["description"]


def conjuncts(node: object) -> list[object]:
    """The operands of a chain of `and`s (PromQL's `and` is left-associative)."""
    if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "and":
        return [*conjuncts(node.lhs), node.rhs]
    return [node]


@pytest.mark.parametrize("direction", ["both", "up", "down"])
def test_the_guards_apply_to_every_side(direction: str) -> None:
    """`and` binds tighter than `or`: the guards must be outside the parenthesised `or`."""
    rule = alerts_of(render_rule_files(alert_config(q={"direction": direction}), {"q": state("q", limits())}))
    parts = conjuncts(promql_parser.parse(rule["QAnomalySustained"]["expr"]))
    assert len(parts) == 3  # the sides, the sample count, present now
    sides = parts[0].expr if isinstance(parts[0], promql_parser.ParenExpr) else parts[0]
    ops = {"both": "or", "up": ">", "down": "<"}
    assert str(sides.op) == ops[direction]
    assert "count_over_time" in str(parts[1]) and ">= 6" in str(parts[1])


def test_the_window_and_step_are_durations_prometheus_reads() -> None:
    rule = alerts_of(render_rule_files(alert_config(q={}), {"q": state("q", limits(window=5401), step=90)}))
    window, step = re.search(r"\[(\w+):(\w+)\]\)", rule["QAnomalySustained"]["expr"]).groups()
    assert (window, parse_duration(window), step, parse_duration(step)) == ("1h31m", 5460, "1m30s", 90)


def test_promtool_accepts_the_rule_and_its_cases_pass(tmp_path: Path, promtool_passes) -> None:
    config = config_of(qps={"alert": {"for": "3m"}}, total={"expr": "sum(x)", "alert": {"direction": "down"}},
                       lat={"step": "1h", "alert": {"direction": "up", "annotations": {"owner": 'x"y'}}},
                       hi={"step": "1m", "sensitivity": "high"}, sparse={"step": "7m", "sensitivity": "low"})
    states = {"qps": state("qps", limits(), None), "lat": state("lat", limits(window=10800), step=3600),
              "total": BaselineState("total", 0.0, (band({}, limits()),)), "hi": state("hi", limits(), step=60),
              "sparse": state("sparse", limits(lower=None), step=420)}
    found, cases = promtool_passes(tmp_path, render_rule_files(config, states, GRAFANA))
    assert found == 20  # 5 baselines x (2 recording, 1 anomaly, 1 sustained)
    assert sum("mean over" in c["name"] for c in cases) == 5


def broken(change: str):
    """A `sustained_condition` that a careless edit would give."""
    original = sustained_rules.sustained_condition

    def condition(*args, **kwargs) -> str:
        text = original(*args, **kwargs)
        guards = re.split(r"\nand on\([^)]*\)\n", text)
        on = re.search(r"\nand on\([^)]*\)\n", text).group(0)
        if change == "no parentheses":
            return on.join([guards[0].removeprefix("(\n").removesuffix("\n)"), *guards[1:]])
        if change == "raw samples":
            return re.sub(r"\[(\w+):\w+\]", r"[\1]", text)
        return on.join(g for i, g in enumerate(guards) if i != {"no count": 1, "not present now": 2}[change])

    return condition


@pytest.mark.parametrize(("change", "why"), [
    ("no count", "fires on a series that has just appeared"),
    ("not present now", "fires for up to W/2 after the series disappeared"),
    ("no parentheses", "the guards only hold the lower side: the upper one fires on a new series"),
    ("raw samples", "the mean of the recorded samples, not of the series' steps"),
])
def test_generated_cases_catch_a_careless_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               promtool, change: str, why: str) -> None:
    config, states = alert_config(qps={}), {"qps": state("qps", limits())}
    cases = render_rule_files(config, states)[TESTS_FILE]
    good = render_rule_files(config, states)[RULES_FILE]
    monkeypatch.setattr(sustained_rules, "sustained_condition", broken(change))
    rules = render_rule_files(config, states)[RULES_FILE]
    assert rules != good and promtool("check", "rules", RULES_FILE, cwd=write_rules(
        tmp_path, rules, cases)).returncode == 0
    run = promtool("test", "rules", TESTS_FILE, cwd=tmp_path)
    assert run.returncode != 0 and "QpsAnomalySustained" in run.stdout + run.stderr, why


def write_rules(folder: Path, rules: str, cases: str) -> Path:
    write_files(folder, {RULES_FILE: rules, TESTS_FILE: cases})
    return folder


@pytest.mark.parametrize(("rules_direction", "cases_direction"), [("both", "up"), ("both", "down"), ("up", "both")])
def test_generated_cases_catch_a_rule_that_ignores_direction(tmp_path: Path, promtool,
                                                             rules_direction: str, cases_direction: str) -> None:
    states = {"q": state("q", limits())}
    rules = render_rule_files(alert_config(q={"direction": rules_direction}), states)[RULES_FILE]
    cases = render_rule_files(alert_config(q={"direction": cases_direction}), states)[TESTS_FILE]
    run = promtool("test", "rules", TESTS_FILE, cwd=write_rules(tmp_path, rules, cases))
    assert run.returncode != 0 and "QAnomalySustained" in run.stdout + run.stderr


def grafana_rules(config: Config, states: dict[str, BaselineState]) -> dict[str, dict]:
    doc = yaml.safe_load(render_grafana_files(config, states, "prom", GRAFANA)[ALERTS_FILE])
    return {r["title"]: r for r in doc["groups"][0]["rules"]}


def test_grafana_twin_asks_the_same_query_and_fires_on_every_series_it_returns() -> None:
    config, states = alert_config(qps={"direction": "up"}), {"qps": state("qps", limits())}
    twin = grafana_rules(config, states)["QpsAnomalySustained"]
    prom = alerts_of(render_rule_files(config, states, GRAFANA))["QpsAnomalySustained"]
    data = {q["refId"]: q["model"] for q in twin["data"]}
    assert set(data) == {"A", "B", "U"} and twin["condition"] == "B" and twin["for"] == "0s"
    assert data["A"]["expr"] == prom["expr"] and data["A"]["instant"] is True
    assert data["B"] == {"refId": "B", "type": "math", "expression": "is_number($A)"}
    assert "smartmetrics_mean_upper" in data["U"]["expr"]
    assert twin["uid"] == sustained_alert_uid("qps") == "ad-qps-" + twin["annotations"]["__dashboardUid__"][7:]
    assert twin["labels"] == prom["labels"]
    for key in ("summary", "dashboard", "baseline"):
        assert twin["annotations"][key] == prom["annotations"][key]
    assert "upper limit {{ with $values.U }}" in twin["annotations"]["description"]


def test_grafana_twin_and_mean_panel_only_where_the_rules_have_the_alert() -> None:
    states = {"qps": state("qps", limits()), "lat": state("lat", limits())}
    config = alert_config(qps={}, lat={"sustained": False})
    rules = grafana_rules(config, states)
    assert {n for n in rules if n.endswith("Sustained")} == {"QpsAnomalySustained"}
    assert len({r["uid"] for r in rules.values()}) == len(rules) and all(len(u) <= 40 for u in
                                                                           (r["uid"] for r in rules.values()))
    files = render_grafana_files(config, states, "prom")
    panels = {name: [p["title"] for p in json.loads(text)["panels"]]
              for name, text in files.items() if name.startswith("dashboards/sm-")}
    assert sum("Mean over the last 1h and its normal range" in titles for titles in panels.values()) == 1
