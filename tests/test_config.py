"""Config loading: defaults, durations, secrets, and errors that name their path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartmetrics.config import ConfigError, load_config, parse_config, render_config
from smartmetrics.engine.durations import format_duration, parse_duration

MINIMAL = {"sources": {"prom": {"url": "http://localhost:9090"}}, "baselines": {"qps": {"expr": "up"}}}


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("14d", 14 * 86400), ("2w", 14 * 86400), ("250ms", 0.25), (90, 90)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "m5", "5m1h", "1.5h", "-5m", "5 m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 60, 3600, 5400, 86400, 14 * 86400, 90061.5])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_minimal_config_gets_sensible_defaults() -> None:
    config = parse_config(MINIMAL)
    qps = config.baselines["qps"]
    assert (qps.step, qps.history, qps.horizon) == (300, 14 * 86400, 86400)
    assert qps.sensitivity == "medium" and qps.alert.direction == "both" and qps.alert.for_ is None
    assert config.source_for("qps")[0] == "prom"
    assert config.store.path == "models/" and config.schedule.retrain == "0 3 * * *"


def test_stuck_alert_is_on_by_default_and_can_be_switched_off() -> None:
    assert parse_config(MINIMAL).baselines["qps"].alert.stuck is True
    off = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": {"stuck": False}}}})
    assert off.baselines["qps"].alert.stuck is False
    assert "stuck: false" in render_config(off)
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": {"stuck": "maybe"}}}})
    assert problems[0].startswith("baselines.qps.alert.stuck:")


def test_sustained_alert_is_on_by_default_and_can_be_switched_off() -> None:
    assert parse_config(MINIMAL).baselines["qps"].alert.sustained is True
    off = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": {"sustained": False}}}})
    assert off.baselines["qps"].alert.sustained is False and off.baselines["qps"].alert.stuck is True
    assert "sustained: false" in render_config(off)
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": {"sustained": "maybe"}}}})
    assert problems[0].startswith("baselines.qps.alert.sustained:")


def test_every_problem_is_listed_with_its_path() -> None:
    data = {
        "sources": {"prom": {"url": "localhost:9090", "timeout": "3x", "colour": "red"}},
        "baselines": {
            "qps": {"expr": "up", "step": "5x", "sensitivity": "extreme", "alert": {"direction": "sideways"}},
            "lat": {"expr": "  "},
        },
        "schedule": {"retrain": "61 * * * *"},
    }
    problems = problems_of(data)
    expected = [
        'sources.prom.url: url "localhost:9090" must start with http:// or https://',
        'sources.prom.timeout: invalid duration "3x"',
        "sources.prom.colour: unknown key",
        'baselines.qps.step: invalid duration "5x"',
        "baselines.qps.sensitivity: expected low|medium|high or a number in (0,1), got 'extreme'",
        "baselines.qps.alert.direction:",
        "baselines.lat.expr: must not be empty",
        'schedule.retrain: invalid cron expression "61 * * * *"',
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize(("value", "ok"), [(0.3, True), (0, False), (1, False), (1.5, False), (True, False), ("high", True)])
def test_sensitivity_domain(value: object, ok: bool) -> None:
    data = {**MINIMAL, "baselines": {"qps": {"expr": "up", "sensitivity": value}}}
    if ok:
        assert parse_config(data).baselines["qps"].sensitivity == value
    else:
        assert problems_of(data)[0].startswith("baselines.qps.sensitivity: expected")


def test_unknown_source_and_ambiguous_source_are_named() -> None:
    sources = {"a": {"url": "http://a:9090"}, "b": {"url": "http://b:9090"}}
    problems = problems_of({"sources": sources, "baselines": {"x": {"expr": "up"}, "y": {"expr": "up", "source": "c"}}})
    assert problems == [
        "baselines.x.source: required when more than one source is configured (one of a, b)",
        'baselines.y.source: unknown source "c" (configured: a, b)',
    ]


def test_missing_required_keys() -> None:
    assert set(problems_of({})) == {"sources: required", "baselines: required"}
    assert problems_of({**MINIMAL, "baselines": {"qps": {}}}) == ["baselines.qps.expr: required"]


def test_grid_consistency_is_checked() -> None:
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "step": "1h", "history": "1h"}}})
    assert problems == ["baselines.qps: history must cover at least two steps"]


def test_secrets_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("PROM_TOKEN", "tok")
    config = parse_config(
        {
            "sources": {
                "a": {"url": "http://a", "basic_auth": {"username": "u", "password_file": str(tmp_path / "pw")}},
                "b": {"url": "http://b", "bearer_token_env": "PROM_TOKEN"},
            },
            "baselines": {"x": {"expr": "up", "source": "a"}},
        }
    )
    assert config.sources["a"].basic_auth.resolved_password() == "s3cret"
    assert config.sources["b"].resolved_bearer_token() == "tok"


def test_secret_problems_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    source = {"url": "http://a", "bearer_token_env": "NOPE"}
    assert problems_of({**MINIMAL, "sources": {"a": source}}) == [
        "sources.a: bearer_token_env: environment variable NOPE is not set"
    ]
    auth = {"username": "u", "password": "x", "password_file": str(tmp_path / "missing")}
    problems = problems_of({**MINIMAL, "sources": {"a": {"url": "http://a", "basic_auth": auth}}})
    assert problems == ["sources.a.basic_auth: give only one of password, password_file, password_env"]


def test_render_redacts_inline_secrets_and_round_trips() -> None:
    data = {**MINIMAL, "sources": {"prom": {"url": "http://p", "basic_auth": {"username": "u", "password": "hunter2"}}}}
    text = render_config(parse_config(data))
    assert "hunter2" not in text and "<redacted>" in text
    reparsed = yaml.safe_load(text)
    reparsed["sources"]["prom"]["basic_auth"]["password"] = "hunter2"
    assert parse_config(reparsed) == parse_config(data)


def test_load_config_reports_yaml_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sources:\n  prom: {url: http://x\nbaselines: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith("line ")
    assert "not valid YAML" in info.value.problems[0]


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config("/nonexistent/config.yaml")


def test_shipped_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "configs" / "example.yaml")
    assert "inference_qps" in config.baselines
    assert config.sources["mimir-team-a"].headers == {"X-Scope-OrgID": "team-a"}
    assert config.baselines["inference_qps"].alert.stuck is True
    assert config.baselines["inference_qps"].alert.sustained is True


@pytest.mark.parametrize(("value", "ok"), [("s", True), ("percentunit", True), ("suffix:req", True),
                                           ("currencyUSD", True), ("", False), ('s"}', False), (5, False)])
def test_unit_is_a_grafana_unit_id(value: object, ok: bool) -> None:
    data = {**MINIMAL, "baselines": {"qps": {"expr": "up", "unit": value}}}
    if ok:
        assert parse_config(data).baselines["qps"].unit == value
    else:
        assert problems_of(data)[0].startswith("baselines.qps.unit: expected a Grafana unit")


def test_unit_does_not_change_the_fit() -> None:
    """Only the dashboards show the unit: setting it must not make the daemon refit the baseline."""
    from smartmetrics.settings import fit_fingerprint

    plain = parse_config(MINIMAL).baselines["qps"]
    with_unit = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "unit": "reqps"}}}).baselines["qps"]
    assert fit_fingerprint(plain) == fit_fingerprint(with_unit)


@pytest.mark.parametrize(
    ("expr", "column", "near"),
    [
        ("sum by (model (rate(x[5m]))", 8, "(model"),  # issue 24: the `by (` never closed
        ("sum(rate(x[5m])))", 17, ")"),
        ('up{job="a"', 3, "{"),
        ("rate(x[5q])", 8, "5q"),
        ("sum by (a) b", 12, "b"),
        ('foo{a=}', 7, "}"),
        ("nofunc(x)", 1, "nofunc"),
    ],
)
def test_promql_syntax_errors_name_the_field_and_the_column(expr: str, column: int, near: str) -> None:
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": expr}}})
    assert len(problems) == 1, problems
    assert problems[0].startswith("baselines.qps.expr: not valid PromQL"), problems
    assert f"at column {column}" in problems[0] and near in problems[0].split(f"at column {column}")[1], problems


def test_releases_expr_is_parsed_too() -> None:
    releases = {"expr": "changes(kube_generation[5m] > 0"}
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "releases": releases}}})
    assert len(problems) == 1 and problems[0].startswith("baselines.qps.releases.expr: not valid PromQL"), problems


def test_valid_promql_passes_unchanged() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, model) (rate(lat_bucket{job=~"a|b"}[5m]))) > bool 0.5'
    assert parse_config({**MINIMAL, "baselines": {"qps": {"expr": f"  {expr}\n"}}}).baselines["qps"].expr == expr


@pytest.mark.parametrize("value", [5, 5.0, 300])
def test_bare_number_durations_are_refused(value: float) -> None:
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": {"for": value}}}})
    assert len(problems) == 1 and problems[0].startswith("baselines.qps.alert.for: "), problems
    assert "unit" in problems[0] and f"{value:g}m" in problems[0] and f"{value:g}s" in problems[0]


def test_zero_and_durations_with_units_still_load() -> None:
    config = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "step": "1m", "alert": {"for": 0}}}})
    assert config.baselines["qps"].alert.for_ == 0 and config.baselines["qps"].step == 60


@pytest.mark.parametrize("label", ["severity", "baseline"])
def test_alert_labels_may_not_set_what_the_rules_set(label: str) -> None:
    alert = {"severity": "warning", "labels": {label: "page", "team": "ml"}}
    problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "alert": alert}}})
    assert len(problems) == 1 and problems[0].startswith(f"baselines.qps.alert.labels: {label} 'page'"), problems
    assert ("alert.severity" if label == "severity" else "alias") in problems[0]


def test_shipped_configs_load() -> None:
    for path in (Path(__file__).parent.parent / "configs").glob("*.yaml"):
        assert load_config(path).baselines, path


def with_ahead(ahead: object, **baseline: object) -> dict:
    return {**MINIMAL, "baselines": {"qps": {"expr": "up", "ahead": ahead, **baseline}}}


def test_ahead_defaults_to_empty_and_keeps_its_spelling() -> None:
    assert parse_config(MINIMAL).baselines["qps"].ahead == []
    qps = parse_config(with_ahead(["15m", "1h", "90m"], horizon="2d")).baselines["qps"]
    assert qps.ahead == ["15m", "1h", "90m"]
    assert qps.ahead_offsets() == (("15m", 900.0), ("1h", 3600.0), ("90m", 5400.0))
    assert "ahead:\n    - 15m\n    - 1h\n    - 90m\n" in render_config(parse_config(with_ahead(["15m", "1h", "90m"])))


@pytest.mark.parametrize(
    ("ahead", "problem"),
    [
        (["0s"], "baselines.qps.ahead.0: ahead must be more than 0s"),
        (["15m", "2d"], "baselines.qps.ahead: 2d is longer than the horizon (1d)"),
        (["15x"], 'baselines.qps.ahead.0: invalid duration "15x"'),
        ([15], "baselines.qps.ahead.0: 15 has no unit"),
        (["1h", "60m"], "baselines.qps.ahead: 60m is the same as 1h"),
        ("15m", "baselines.qps.ahead: Input should be a valid list"),
    ],
)
def test_ahead_errors_name_the_field(ahead: object, problem: str) -> None:
    assert any(p.startswith(problem) for p in problems_of(with_ahead(ahead))), problems_of(with_ahead(ahead))


def test_ahead_may_equal_the_horizon() -> None:
    assert parse_config(with_ahead(["1d"])).baselines["qps"].ahead_offsets() == (("1d", 86400.0),)


def test_ahead_does_not_change_the_fit() -> None:
    """`ahead` only reads the stored forecast: setting it must not refit, and its default leaves the
    fingerprint of every stored baseline as it was (no refit on upgrade)."""
    from smartmetrics.settings import fit_fingerprint

    plain = parse_config(MINIMAL).baselines["qps"]
    assert fit_fingerprint(plain) == fit_fingerprint(parse_config(with_ahead(["15m"])).baselines["qps"])


@pytest.mark.parametrize("feedback, problem", [
    ({"silences_as_noise": True}, "feedback: silences_as_noise needs alertmanager"),
    ({"alertmanager": {"url": "alertmanager:9093"}}, "feedback.alertmanager.url: url \"alertmanager:9093\" must start"),
    ({"interval": "5s"}, "feedback.interval: interval must be at least 10s"),
    ({"silences": True}, "feedback.silences: unknown key"),
])
def test_feedback_problems_name_the_field(feedback: dict, problem: str) -> None:
    found = problems_of({**MINIMAL, "feedback": feedback})
    assert any(p.startswith(problem) for p in found), found


def test_silences_as_noise_reads_an_alertmanager_whose_secrets_are_redacted() -> None:
    config = parse_config({**MINIMAL, "feedback": {"silences_as_noise": True, "alertmanager": {
        "url": "https://oncall:s3cret@am.example:9093/", "headers": {"X-Token": "t0k"}}}})
    assert config.feedback.alertmanager.url == "https://oncall:s3cret@am.example:9093"
    assert config.feedback.interval == 300
    text = render_config(config)
    assert "s3cret" not in text and "t0k" not in text and "am.example:9093" in text


def test_the_commented_feedback_example_is_valid_once_uncommented() -> None:
    text = (Path(__file__).parent.parent / "configs" / "example.yaml").read_text()
    block = text[text.index("# feedback:"):].split("\n\n")[0].splitlines()
    uncommented = "\n".join(line[2:] for line in block if not line.startswith("#     #"))
    config = parse_config({**yaml.safe_load(text), **yaml.safe_load(uncommented)})
    assert config.feedback.silences_as_noise and config.feedback.alertmanager.url == "http://alertmanager:9093"


def test_how_releases_move_the_history_is_part_of_the_fit() -> None:
    """A changed `settle` or `absorb` refits (and drops the kept backtests); the markers' expr does not,
    and releases with the defaults leave the digest as it was before it counted them."""
    from smartmetrics.settings import fit_fingerprint

    def baseline(**releases: object):
        spec = {"expr": "up", **({"releases": {"expr": "deploys > 0", **releases}} if releases is not None else {})}
        return parse_config({**MINIMAL, "baselines": {"qps": spec}}).baselines["qps"]

    plain = fit_fingerprint(parse_config(MINIMAL).baselines["qps"])
    assert fit_fingerprint(baseline()) == plain
    assert fit_fingerprint(baseline(settle="30m", absorb="both")) == plain
    assert fit_fingerprint(baseline(settle="1h")) != plain
    assert fit_fingerprint(baseline(absorb="down")) not in (plain, fit_fingerprint(baseline(settle="1h")))


def test_min_history_defaults_to_a_day_and_never_exceeds_the_history() -> None:
    from smartmetrics.settings import fit_fingerprint, fit_settings

    baseline = parse_config(MINIMAL).baselines["qps"]
    assert baseline.min_history == 86400 and fit_settings(baseline).min_history == 86400
    short = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "history": "6h"}}}).baselines["qps"]
    assert fit_settings(short).min_history == 6 * 3600  # the default day, for a baseline that reads 6h
    early = parse_config({**MINIMAL, "baselines": {"qps": {"expr": "up", "min_history": "1h"}}}).baselines["qps"]
    assert fit_settings(early).min_history == 3600
    assert fit_fingerprint(early) != fit_fingerprint(baseline)  # a learning time changes the fit
    for value, problem in (("30d", "min_history (30d) must be between 0 and the history (14d)"),
                           ("-1h", "min_history")):
        problems = problems_of({**MINIMAL, "baselines": {"qps": {"expr": "up", "min_history": value}}})
        assert len(problems) == 1 and problem in problems[0] and "qps" in problems[0]
