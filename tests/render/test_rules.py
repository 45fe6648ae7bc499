"""Generated Prometheus rules: golden files, promtool as the judge, label matching and escaping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from smartmetrics.adapters.store import save_baseline
from smartmetrics.app.cli import main
from smartmetrics.config import Config, parse_config
from smartmetrics.engine.state import BaselineState, SeriesBand
from smartmetrics.render.parts import alert_condition, series_label_names, write_files
from smartmetrics.render.promql import RulesError, expr_label_names, quote
from smartmetrics.render.rules import RULES_FILE, TESTS_FILE, render_rule_files

GRAFANA = "https://grafana.example.com/"

BASELINES = {
    "inference_qps": {
        "expr": "sum by (model, tenant) (rate(model_inference_requests_total[5m]))  # per model",
        "alert": {"labels": {"team": "ml-platform"}, "annotations": {"runbook_url": "https://runbooks.example.com/qps"}},
    },
    "p99_latency": {
        "expr": "histogram_quantile(0.99, sum by (model, le) (rate(latency_seconds_bucket[5m])))",
        "alert": {"direction": "up", "for": "5m", "min_abs_deviation": 50, "severity": "page"},
    },
    "gpu_util": {
        "expr": "avg by (gpu, instance) (DCGM_FI_DEV_GPU_UTIL)",
        "alert": {"direction": "down", "for": "0s", "min_rel_deviation": 0.5},
    },
    'odd "alias" \\ here': {
        "expr": 'sum(rate(errors_total{path="/a\\"b"}[5m]))',
        "alert": {"for": "90s", "labels": {"note": 'say "hi" \\o/ {{not a template}}'},
                  "annotations": {"owner": 'team "x"'}},
    },
    "raw": {"expr": "sm_labelled", "alert": {"for": "2m"}},
}


def make_config(baselines: dict | None = None) -> Config:
    return parse_config({"sources": {"prom": {"url": "http://127.0.0.1:9090"}},
                         "baselines": baselines or BASELINES})


def band(labels: dict[str, str], stuck_after: int = 0, sustained: dict | None = None) -> SeriesBand:
    y = np.array([1.0, 2.0])
    training = {"stuck_after": stuck_after, "sustained": sustained}
    return SeriesBand(labels, 0, 60, y, y - 1, y + 1, meta={"training": training})


STATES = {"raw": BaselineState("raw", 0.0, (
    band({"job": "x", "baseline": "theirs"}, stuck_after=1500),
    band({"job": "x", "instance": "b"}, sustained={"window": 3600, "lower": 0.5, "upper": 4.0})))}


def test_rule_files_match_golden(golden) -> None:
    files = render_rule_files(make_config(), STATES, GRAFANA)
    for name, text in files.items():
        golden(f"rules/{name}", text)


def test_same_config_and_state_give_the_same_bytes() -> None:
    shuffled = dict(reversed(list(BASELINES.items())))
    states = {"raw": BaselineState("raw", 5.0, tuple(reversed(STATES["raw"].series)))}
    assert render_rule_files(make_config(), STATES) == render_rule_files(make_config(shuffled), states)


@pytest.mark.parametrize("grafana_url", [None, GRAFANA])
def test_promtool_accepts_the_rules_and_their_tests_pass(tmp_path: Path, promtool_passes,
                                                        grafana_url: str | None) -> None:
    found, _ = promtool_passes(tmp_path, render_rule_files(make_config(), STATES, grafana_url))
    assert found == 17  # 5 baselines x 3, and raw's stuck and sustained alerts


def test_generated_cases_catch_a_rule_that_ignores_direction(tmp_path: Path, promtool) -> None:
    """Rules rendered as if `up` were `both` fire below the band: the `up` cases must fail on that."""
    up = {"lat": {"expr": "sum by (model) (x)", "alert": {"direction": "up", "for": "3m"}}}
    both = {"lat": {"expr": "sum by (model) (x)", "alert": {"direction": "both", "for": "3m"}}}
    rules = render_rule_files(make_config(both), {})[RULES_FILE]
    cases = render_rule_files(make_config(up), {})[TESTS_FILE]
    write_files(tmp_path, {RULES_FILE: rules, TESTS_FILE: cases})
    run = promtool("test", "rules", TESTS_FILE, cwd=tmp_path)
    assert run.returncode != 0 and "FAILED" in run.stdout + run.stderr


def test_generated_cases_catch_a_rule_without_for(tmp_path: Path, promtool) -> None:
    slow = {"q": {"expr": "sum by (model) (x)", "alert": {"for": "4m"}}}
    fast = {"q": {"expr": "sum by (model) (x)", "alert": {"for": "0s"}}}
    rules = render_rule_files(make_config(fast), {})[RULES_FILE]
    write_files(tmp_path, {RULES_FILE: rules, TESTS_FILE: render_rule_files(make_config(slow), {})[TESTS_FILE]})
    assert promtool("test", "rules", TESTS_FILE, cwd=tmp_path).returncode != 0


def test_value_rule_labels_and_matching_on_real_inputs(tmp_path: Path, promtool) -> None:
    """The value rule keeps the series' labels, moves its own `baseline` aside and matches a band that
    carries the daemon's extra job/instance (honor_labels) exactly once."""
    config = make_config({"agg": {"expr": "sum by (model) (sm_rate)", "alert": {"for": "0s"}},
                          "raw": {"expr": "sm_labelled", "alert": {"for": "0s"}}})
    write_files(tmp_path, render_rule_files(config, STATES))
    extra = 'job="smartmetrics", instance="d:1"'
    doc = {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'sm_rate{job="a", instance="1", model="m"}', "values": "60x5"},
            {"series": 'sm_rate{job="a", instance="2", model="m"}', "values": "100x5"},
            {"series": 'sm_labelled{job="x", baseline="theirs"}', "values": "7x5"},
            {"series": f'smartmetrics_yhat{{baseline="agg", model="m", {extra}}}', "values": "100x5"},
            {"series": f'smartmetrics_yhat_lower{{baseline="agg", model="m", {extra}}}', "values": "80x5"},
            {"series": f'smartmetrics_yhat_upper{{baseline="agg", model="m", {extra}}}', "values": "200x5"},
        ],
        "promql_expr_test": [
            {"expr": "smartmetrics:value", "eval_time": "2m", "exp_samples": [
                {"labels": 'smartmetrics:value{baseline="agg", model="m"}', "value": 160},
                {"labels": 'smartmetrics:value{baseline="raw", exported_baseline="theirs", job="x"}', "value": 7}]},
            {"expr": "smartmetrics:anomaly_score", "eval_time": "2m", "exp_samples": [
                {"labels": 'smartmetrics:anomaly_score{baseline="agg", model="m"}', "value": 0.6}]},
        ],
    }]}
    (tmp_path / "match.yml").write_text(yaml.safe_dump(doc))
    run = promtool("test", "rules", "match.yml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_label_names_come_from_the_store_first() -> None:
    config = make_config({"raw": {"expr": "sum by (zone) (x)"}})
    assert series_label_names(config, STATES) == {"raw": ("exported_baseline", "instance", "job")}
    assert series_label_names(config, {}) == {"raw": ("zone",)}


@pytest.mark.parametrize(("expr", "names"), [
    ("sum by (model, tenant) (rate(x[5m]))", ("model", "tenant")),
    ("histogram_quantile(0.99, sum by (model, le) (rate(b[5m])))", ("model",)),
    ("100 * (sum by (code) (x) / 3)", ("code",)),
    ("-sum by (baseline) (x)", ("exported_baseline",)),
    ("sum(x)", ()),
    ("sum without (pod) (x)", None),
    ("sum by (model) (rate(e[5m])) / sum by (model) (rate(r[5m]))", ("model",)),
    ("sum by (a) (x) / on(a) group_left(b) sum by (a, b) (y)", None),
    ("x / y", None),
    ("rate(x[5m]", None),
])
def test_expr_label_names(expr: str, names: tuple[str, ...] | None) -> None:
    assert expr_label_names(expr) == names


def test_unknown_labels_fail_naming_the_baseline_and_the_fix() -> None:
    with pytest.raises(RulesError, match=r"baselines\.pods: .*run `smartmetrics fit` first"):
        series_label_names(make_config({"pods": {"expr": "sum without (pod) (x)"}}), {})


def test_bad_alert_label_name_is_named() -> None:
    config = make_config({"q": {"expr": "sum(x)", "alert": {"labels": {"bad-name": "v"}}}})
    with pytest.raises(RulesError, match=r"baselines\.q\.alert\.labels: 'bad-name' is not a valid label name"):
        render_rule_files(config, {})


def test_quote_escapes_everything_promql_would_misread() -> None:
    assert quote('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'


def test_alert_condition_honours_direction_and_minimum_deviation() -> None:
    config = make_config({"q": {"expr": "sum by (m) (x)",
                                "alert": {"direction": "down", "min_rel_deviation": 0.2}}})
    text = alert_condition("q", config.baselines["q"].alert, ("m",), 1.0)
    assert 'smartmetrics:anomaly_score{baseline="q"} > 1' in text
    assert '(smartmetrics:value{baseline="q"} < on(baseline, m) smartmetrics_yhat{baseline="q"})' in text
    assert ">= on(baseline, m) 0.2 * abs(" in text


def test_cli_writes_the_files_and_explains_a_missing_fit(tmp_path: Path, capsys) -> None:
    store = tmp_path / "models"
    save_baseline(store, BaselineState("raw", 0.0, STATES["raw"].series))
    config = tmp_path / "c.yaml"
    data = {"sources": {"p": {"url": "http://127.0.0.1:9"}}, "store": {"path": str(store)},
            "baselines": {"raw": {"expr": "sm_labelled"}}}
    config.write_text(yaml.safe_dump(data))
    assert main(["rules", "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / RULES_FILE).exists() and (tmp_path / "out" / TESTS_FILE).exists()
    data["baselines"]["new"] = {"expr": "rate(x[5m])"}
    config.write_text(yaml.safe_dump(data))
    assert main(["rules", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "baselines.new" in capsys.readouterr().err


def test_the_shipped_configs_give_rules_promtool_accepts(tmp_path: Path, promtool) -> None:
    from smartmetrics.config import load_config

    root = Path(__file__).parents[2] / "configs"
    for name in ("demo.yaml", "example.yaml"):
        folder = tmp_path / name
        write_files(folder, render_rule_files(load_config(root / name), {}, GRAFANA))
        check = promtool("check", "rules", RULES_FILE, cwd=folder)
        assert check.returncode == 0, check.stdout + check.stderr
        run = promtool("test", "rules", TESTS_FILE, cwd=folder)
        assert run.returncode == 0, run.stdout + run.stderr
