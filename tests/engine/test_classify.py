"""Classifier: accuracy on a seeded corpus, robustness to incidents, insufficient history, JSON, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from smartmetrics.adapters.files import write_csv_series
from smartmetrics.app.cli import main
from smartmetrics.engine.classify import Classification, classify_series
from smartmetrics.engine.regimes import Regime
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.synth import CURVE_KINDS, Anomaly, inject_anomaly, make_corpus, make_series


def test_accuracy_on_a_small_seeded_corpus() -> None:
    corpus = make_corpus(192, seed=42)  # not a seed the thresholds were chosen on
    right = Counter(c.curve_type for c in corpus if classify_series(c.series).curve_type == c.curve_type)
    total = Counter(c.curve_type for c in corpus)
    assert sum(right.values()) / len(corpus) >= 0.95
    for kind in CURVE_KINDS:
        assert right[kind] / total[kind] >= 0.85, kind


@pytest.mark.parametrize("step,days", [(60, 14), (300, 7), (3600, 28)])
def test_accuracy_holds_at_other_steps_and_lengths(step: int, days: int) -> None:
    corpus = make_corpus(64, seed=44, step=step, days=days)
    right = sum(classify_series(c.series).curve_type == c.curve_type for c in corpus)
    assert right / len(corpus) >= 0.9


def test_seasonal_periods_match_the_truth() -> None:
    corpus = [c for c in make_corpus(240, seed=43) if c.curve_type == "seasonal"]
    hits = 0
    for item in corpus:
        found = classify_series(item.series).periods
        hits += len(found) == len(item.periods) and all(
            any(abs(f - p) <= item.series.step for f in found) for p in item.periods)
    assert hits / len(corpus) >= 0.9


@pytest.mark.parametrize("kind,size", [("spike", 20.0), ("dip", 1.0), ("variance_burst", 10.0)])
def test_one_hour_incident_keeps_a_seasonal_series_seasonal(kind: str, size: float) -> None:
    for seed in range(6):
        s = make_series("seasonal", seed=seed, noise="high").series
        at = s.start + 6 * 86400 + 3600 * seed
        level = float(np.nanmedian(s.values))
        values = inject_anomaly(s.values, s.timestamps, Anomaly(kind, at, at + 3600 - s.step), size * level)
        result = classify_series(Series(s.labels, s.timestamps, values, s.step))
        assert result.curve_type == "seasonal", (seed, result.reasons)


def test_one_hour_incident_keeps_a_stable_series_stable() -> None:
    s = make_series("stable", seed=9, noise="medium").series
    values = s.values.copy()
    values[2000:2012] = 0.0  # an hour of outage reading zero
    assert classify_series(Series(s.labels, s.timestamps, values, s.step)).curve_type == "stable"


def test_short_history_is_insufficient_with_a_reason() -> None:
    t = np.arange(100) * 300  # 8.3 hours
    result = classify_series(Series({}, t, np.sin(t / 3000.0), 300))
    assert result.curve_type == "insufficient"
    assert any("history" in r and "< 1 day" in r for r in result.reasons)


def test_sparse_history_is_insufficient_with_a_reason() -> None:
    t = np.arange(4032) * 300
    values = np.full(len(t), np.nan)
    values[::200] = 1.0 + np.arange(len(values[::200]))
    result = classify_series(Series({}, t, values, 300))
    assert result.curve_type == "insufficient"
    assert any("finite points" in r for r in result.reasons)


def test_classification_round_trips_through_json() -> None:
    result = classify_series(make_series("seasonal", seed=1).series)
    assert result.curve_type == "seasonal" and result.reasons and 0 <= result.confidence <= 1
    back = Classification.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.curve_type == result.curve_type and back.periods == result.periods
    assert back.reasons == result.reasons and back.features.keys() == result.features.keys()
    assert back.confidence == pytest.approx(result.confidence, abs=1e-4)


def test_regimes_are_found_shown_and_round_trip() -> None:
    rng = np.random.default_rng(3)
    t = 1_704_067_200 + 60 * np.arange(7 * 1440, dtype=np.int64)
    y = 40.0 + rng.normal(0, 1.0, len(t))  # an idle GPU's power draw...
    for start in rng.integers(0, len(t) - 90, 9):  # ...and batch jobs of 20 to 90 minutes at any hour
        y[start:start + int(rng.integers(20, 90))] = 260.0 + rng.normal(0, 3.0)
    result = classify_series(Series({"gpu": "0"}, t, y, 60))
    assert result.curve_type == "regime"
    assert [round(r.centre, -1) for r in result.regimes] == [40.0, 260.0]
    assert result.regimes[1].episodes >= 3 and result.regimes[1].longest <= 90 * 60
    assert any(r.startswith("regimes 40") for r in result.reasons)
    back = Classification.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.regimes == tuple(Regime(**r) for r in result.to_dict()["regimes"])
    one_off = y.copy()
    one_off[(one_off > 100)] = 40.0
    one_off[3000:3600] = 260.0  # one long visit is a shift or an incident, never a regime
    assert classify_series(Series({"gpu": "0"}, t, one_off, 60)).curve_type != "regime"


def test_cli_classifies_csv_files_as_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    seasonal, flat = tmp_path / "qps.csv", tmp_path / "flat.csv"
    write_csv_series(make_series("seasonal", seed=2, noise="low").series, seasonal)
    write_csv_series(make_series("constant", seed=2, noise="low").series, flat)
    assert main(["classify", "--csv", str(seasonal), str(flat), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["curve_type"] for r in rows] == ["seasonal", "constant"]
    assert rows[0]["periods"] and rows[0]["name"] == str(seasonal)
    coverage = rows[0]["coverage"]  # each series' band, fitted: what it promises and what it kept
    assert coverage["nominal"] == 0.9995 and 0.9 <= coverage["held_out"] <= 1.0 and coverage["held_out_points"] > 200
    assert main(["classify", "--csv", str(seasonal)]) == 0
    out = capsys.readouterr().out
    assert "seasonal" in out and "qps.csv" in out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["classify"]) == 2
    assert main(["classify", "--csv", str(tmp_path / "missing.csv")]) == 1
    assert "error" in capsys.readouterr().err


@pytest.mark.prometheus
def test_cli_classifies_a_configured_baseline_from_prometheus(prometheus, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"sources": {"main": {"url": prometheus.url}}, "baselines": {
        "qps": {"expr": "sm_requests_rate", "step": "5m", "history": "14d"},
        "latency": {"expr": "sm_latency_seconds", "step": "5m", "history": "14d"},
    }}))  # JSON is YAML
    code = main(["classify", "--config", str(config), "--end", str(prometheus.end), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    by_source = {(r["source"], r["labels"]["instance"]): r for r in rows}
    assert len(by_source) == 6
    for inst in "abc":
        assert by_source[("qps", inst)]["curve_type"] == "seasonal"
        assert by_source[("qps", inst)]["periods"] == [86400]
        assert by_source[("latency", inst)]["curve_type"] == "stable"
