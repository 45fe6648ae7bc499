"""`smartmetrics backtest` with a PromQL query as INPUT, against the real test Prometheus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from smartmetrics.app.cli import main


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"sources": {"prom": {"url": url}}, "baselines": {"x": {"expr": "up"}}}))
    return path


def test_query_input_is_replayed(prometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, prometheus.url)
    out = tmp_path / "out.csv"
    code = main(["backtest", 'sm_requests_rate{instance="a"}', "--config", str(config), "--range", "4d",
                 "--step", "5m", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["timestamp", "value", "yhat", "yhat_lower", "yhat_upper", "anomaly_score",
                                   "firing", "alert", "alerts"]
    assert len(frame) >= 4 * 288 - 2 and frame.yhat.notna().sum() > 2 * 288


def test_query_with_several_series_is_refused(prometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, prometheus.url)
    with pytest.raises(SystemExit) as info:
        main(["backtest", "sm_requests_rate", "--config", str(config), "--range", "2d", "--out", str(tmp_path / "o")])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "returned 3 series; narrow it to one" in err and 'instance="b"' in err


def test_an_unknown_baseline_is_a_usage_error(prometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, prometheus.url)
    code = main(["backtest", "up", "--config", str(config), "--baseline", "nope", "--out", str(tmp_path / "o.csv")])
    assert code == 2 and "no baseline 'nope'" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()
