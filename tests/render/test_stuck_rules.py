"""The stuck-value alert: rendered only when enabled and fitted, its window, and promtool as the judge."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartmetrics.config import Config, parse_config
from smartmetrics.engine.durations import parse_duration
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.render import stuck_rules
from smartmetrics.render.parts import write_files
from smartmetrics.render.rules import RULES_FILE, TESTS_FILE, render_rule_files
from smartmetrics.render.stuck_rules import stuck_alert_name, stuck_window, stuck_windows

GRAFANA = "https://grafana.example.com"


def band(labels: dict[str, str], stuck_after: object = None) -> SeriesBand:
    y = np.array([1.0, 2.0])
    meta = {} if stuck_after is None else {"training": {"stuck_after": stuck_after}}
    return SeriesBand(labels, 0, 60, y, y - 1, y + 1, meta=meta)


def state(alias: str, *stuck_after: object) -> BaselineState:
    return BaselineState(alias, 0.0, tuple(band({"model": f"m{i}"}, s) for i, s in enumerate(stuck_after)))


def make_config(exprs: dict[str, str] | None = None, **alerts: dict) -> Config:
    """One baseline per keyword (its `alert` options), `sum by (model)` unless `exprs` says otherwise."""
    exprs = exprs or {}
    baselines = {alias: {"expr": exprs.get(alias, "sum by (model) (rate(x[5m]))"), "alert": alert}
                 for alias, alert in alerts.items()}
    return parse_config({"sources": {"p": {"url": "http://127.0.0.1:9090"}}, "baselines": baselines})


def alerts_of(files: dict[str, str]) -> dict[str, dict]:
    doc = yaml.safe_load(files[RULES_FILE])
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize(("values", "window"), [
    ((1500,), 1500),  # a whole number of minutes stays
    ((1501,), 1560),  # otherwise rounded up, never down
    ((30,), 60),
    ((0, 600, 1799.5, 120), 1800),  # the largest of the baseline's series
    ((0, None), 0),
    ((True, "1800", -60, float("nan"), float("inf")), 0),  # not a positive number: no stuck detection
])
def test_window_is_the_largest_stuck_after_rounded_up_to_a_minute(values: tuple, window: int) -> None:
    assert stuck_window(state("q", *values)) == window


def test_stuck_rule_only_when_enabled_and_a_fitted_series_has_stuck_detection() -> None:
    config = make_config(on={}, off={"stuck": False}, none={}, unfitted={})
    states = {"on": state("on", 0, 1200), "off": state("off", 1200), "none": state("none", 0, None)}
    assert stuck_windows(config, states) == {"on": 1200}
    alerts = alerts_of(render_rule_files(config, states))
    assert {n for n in alerts if n.endswith("Stuck")} == {stuck_alert_name("on")} == {"OnAnomalyStuck"}
    assert not any(n.endswith("Stuck") for n in alerts_of(render_rule_files(config, {})))


def test_stuck_rule_uses_the_window_the_labels_and_the_anomaly_alerts_labels() -> None:
    config = make_config(qps={"severity": "page", "labels": {"team": "ml"}, "annotations": {"runbook": "r"}})
    rule = alerts_of(render_rule_files(config, {"qps": state("qps", 1500, 1501)}, GRAFANA))["QpsAnomalyStuck"]
    assert "for" not in rule and "keep_firing_for" not in rule
    assert 'changes(smartmetrics:value{baseline="qps"}[26m]) == 0' in rule["expr"]
    assert 'smartmetrics:value{baseline="qps"} offset 26m' in rule["expr"]
    assert 'smartmetrics_stuck_after_seconds{baseline="qps"} <= 1560' in rule["expr"]
    assert rule["expr"].count("and on(baseline, model)\n") == 3
    assert rule["labels"] == {"baseline": "qps", "severity": "page", "team": "ml"}
    assert "has not changed for 26m" in rule["annotations"]["summary"]
    assert "normally changes at almost every step" in rule["annotations"]["description"]
    assert rule["annotations"]["runbook"] == "r" and "/d/sm-qps-" in rule["annotations"]["dashboard"]


def test_promtool_accepts_the_stuck_rule_and_its_cases_pass(tmp_path: Path, promtool_passes) -> None:
    config = make_config({"total": "sum(rate(x[5m]))"}, qps={"for": "3m"},
                         lat={"direction": "up", "annotations": {"owner": 'x"y'}}, total={})
    states = {"qps": state("qps", 1500, 0), "lat": state("lat", 61),
              "total": BaselineState("total", 0.0, (band({}, 3600),))}
    found, cases = promtool_passes(tmp_path, render_rule_files(config, states, GRAFANA))
    assert found == 12  # 3 baselines x (2 recording, 1 anomaly, 1 stuck)
    assert sum("stuck after" in c["name"] for c in cases) == 3


def drop_part(index: int):
    """A `stuck_condition` with its `index`-th conjunct left out (the rule a careless edit would give)."""
    original = stuck_rules.stuck_condition

    def condition(*args, **kwargs) -> str:
        parts = re.split(r"\nand on\([^)]*\)\n", original(*args, **kwargs))
        on = re.search(r"\nand on\([^)]*\)\n", original(*args, **kwargs)).group(0)
        return on.join(p for i, p in enumerate(parts) if i != index)

    return condition


@pytest.mark.parametrize(("index", "why"), [
    (1, "present now: fires for up to W after the series disappeared"),
    (2, "present W ago: fires on a series that just appeared"),
    (3, "stuck_after: fires for series without stuck detection"),
])
def test_generated_cases_catch_a_rule_without_each_guard(tmp_path: Path, promtool,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        index: int, why: str) -> None:
    config, states = make_config(qps={}), {"qps": state("qps", 600)}
    cases = render_rule_files(config, states)[TESTS_FILE]
    monkeypatch.setattr(stuck_rules, "stuck_condition", drop_part(index))
    rules = render_rule_files(config, states)[RULES_FILE]
    assert rules.count("\n      and on(") == 2  # the guard is gone
    write_files(tmp_path, {RULES_FILE: rules, TESTS_FILE: cases})
    run = promtool("test", "rules", TESTS_FILE, cwd=tmp_path)
    assert run.returncode != 0 and "QpsAnomalyStuck" in run.stdout + run.stderr, why


def test_generated_cases_catch_a_window_that_is_too_short(tmp_path: Path, promtool) -> None:
    config = make_config(qps={})
    cases = render_rule_files(config, {"qps": state("qps", 1800)})[TESTS_FILE]
    rules = render_rule_files(config, {"qps": state("qps", 1200)})[RULES_FILE]
    rules = rules.replace("<= 1200", "<= 1800")  # only the window differs
    write_files(tmp_path, {RULES_FILE: rules, TESTS_FILE: cases})
    assert promtool("test", "rules", TESTS_FILE, cwd=tmp_path).returncode != 0


def test_the_window_is_a_duration_prometheus_reads() -> None:
    rule = alerts_of(render_rule_files(make_config(q={}), {"q": state("q", 5401)}))["QAnomalyStuck"]
    window = re.search(r"\[(\w+)\]\) == 0", rule["expr"]).group(1)
    assert (window, parse_duration(window)) == ("1h31m", 5460)
