"""`smartmetrics fetch` end to end against the real local Prometheus."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from smartmetrics.app.cli import main

pytestmark = pytest.mark.prometheus


def write_config(path, url: str, baselines: dict) -> str:
    path.write_text(yaml.safe_dump({"sources": {"main": {"url": url}}, "baselines": baselines}))
    return str(path)


def read_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds and values of a fetched CSV (read independently of smartmetrics.engine.series)."""
    frame = pd.read_csv(path)
    stamps = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return stamps.to_numpy(), frame["value"].to_numpy(dtype=float)


def test_fetch_writes_csv_and_labels(prometheus, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", prometheus.url, {
        "rate": {"expr": "sm_requests_rate", "step": "5m", "history": "2d"},
        "gappy": {"expr": "sm_gappy", "step": "1m", "history": "15d"},
    })
    out = tmp_path / "out"
    code = main(["fetch", "--config", config, "--out", str(out), "--end", str(prometheus.end)])
    assert code == 0
    index = json.loads((out / "rate" / "labels.json").read_text())
    assert sorted(v["instance"] for v in index.values()) == ["a", "b", "c"]
    assert sorted(p.name for p in (out / "rate").glob("*.csv")) == sorted(index)
    name = next(n for n, labels in index.items() if labels == {"instance": "c", "job": "api"})
    stamps, values = read_csv(out / "rate" / name)
    want = prometheus.expected("sm_requests_rate", job="api", instance="c")
    np.testing.assert_array_equal(stamps, np.arange(prometheus.end - 2 * 86400, prometheus.end + 1, 300))
    np.testing.assert_allclose(values, want.values[-2 * 1440 - 1::5], rtol=1e-12)
    (gappy,) = json.loads((out / "gappy" / "labels.json").read_text())
    stamps, values = read_csv(out / "gappy" / gappy)
    assert len(stamps) == 15 * 1440 + 1 and np.isnan(values).sum() == 178  # gaps written as empty
    err = capsys.readouterr().err
    assert "fetch summary" in err and "rate" in err and "gappy" in err


def test_one_failing_baseline_exits_1_and_the_others_are_written(prometheus, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", prometheus.url, {
        # valid syntax (check-config parses every expr), refused by Prometheus: the regex does not compile
        "broken": {"expr": 'label_replace(sm_requests_total, "a", "$1", "job", "(")', "history": "1d"},
        "good": {"expr": "sm_requests_total", "step": "1h", "history": "1d"},
    })
    out = tmp_path / "out"
    code = main(["fetch", "--config", config, "--out", str(out), "--end", str(prometheus.end)])
    assert code == 1
    assert len(json.loads((out / "good" / "labels.json").read_text())) == 2
    assert not (out / "broken").exists()
    err = capsys.readouterr().err
    assert "error: baseline broken: Prometheus rejected the query" in err and "regular expression" in err, err
    assert "1 of 2 baselines failed: broken" in err


def test_fetch_of_one_named_baseline(prometheus, tmp_path):
    config = write_config(tmp_path / "c.yaml", prometheus.url, {
        "a": {"expr": "sm_labelled", "step": "1h", "history": "1d"},
        "b": {"expr": "sm_gappy", "step": "1h", "history": "1d"},
    })
    out = tmp_path / "out"
    assert main(["fetch", "--config", config, "--baseline", "a", "--out", str(out), "--end", str(prometheus.end)]) == 0
    assert [p.name for p in out.iterdir()] == ["a"]
    assert list(json.loads((out / "a" / "labels.json").read_text()).values()) == [
        {"exported_baseline": "theirs", "job": "x"}]


def test_fetch_benchmark_runs_and_both_ways_agree(capsys):
    from smartmetrics.benchmarks.fetch import main as bench

    assert bench(["--series", "2", "--days", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "same data: both got 2 series and 2,882 points" in out and "series/s" in out


def test_a_baseline_written_without_a_batch_that_failed_exits_1(tmp_path, capsys, monkeypatch):
    from smartmetrics.adapters.source import FetchResult
    from smartmetrics.engine.series import Series

    def partial(config, alias, end=None, **_):
        got = Series({"id": "a"}, np.array([0, 300]), np.array([1.0, 2.0]), 300)
        return FetchResult(alias, [got], 0, 3, 2, 0.1, failed=[{"id": "b"}, {"id": "c"}])

    monkeypatch.setattr("smartmetrics.app.fetch.fetch_baseline", partial)
    config = write_config(tmp_path / "c.yaml", "http://prom.test", {"big": {"expr": "m"}})
    out = tmp_path / "out"
    assert main(["fetch", "--config", config, "--out", str(out)]) == 1
    assert list(json.loads((out / "big" / "labels.json").read_text()).values()) == [{"id": "a"}]
    err = capsys.readouterr().err
    assert "written without the series that could not be fetched: big" in err
