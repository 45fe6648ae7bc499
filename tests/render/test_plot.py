"""`smartmetrics plot`: PNGs from a backtest table, a plain CSV, and a live baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmetrics.app.cli import main
from smartmetrics.engine.series import Series
from smartmetrics.engine.state import SeriesBand
from smartmetrics.evaluation.synth import make_series
from smartmetrics.render.plots import plot_band, render_live_frame

PNG = b"\x89PNG\r\n\x1a\n"


def write_plain_csv(path: Path, days: int = 4) -> Path:
    s = make_series("seasonal", days=days, seed=3).series
    stamps = pd.to_datetime(s.timestamps, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": s.values}).to_csv(path, index=False)
    return path


def test_plain_csv_is_replayed_then_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_plain_csv(tmp_path / "s.csv")
    assert main(["plot", str(csv), "--out", str(tmp_path / "s.png"), "--last", "2d"]) == 0
    assert (tmp_path / "s.png").read_bytes().startswith(PNG)
    replay = pd.read_csv(tmp_path / "s.backtest.csv")
    assert replay.yhat_upper.notna().sum() > 0
    assert "wrote" in capsys.readouterr().out


def test_backtest_output_is_drawn_as_is(tmp_path: Path) -> None:
    csv = write_plain_csv(tmp_path / "s.csv")
    assert main(["backtest", str(csv), "--out", str(tmp_path / "b.csv")]) == 0
    assert main(["plot", str(tmp_path / "b.csv"), "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_usage_errors(tmp_path: Path) -> None:
    assert main(["plot", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.png")]) == 1
    assert main(["plot", str(tmp_path / "x.csv"), "--out", "x.png", "--last", "5x"]) == 2


def test_live_frame_puts_the_forecast_after_the_history(tmp_path: Path) -> None:
    series = Series({"a": "1"}, np.arange(0, 600, 60), np.arange(10.0), 60)
    y = np.full(5, 3.0)
    frame = render_live_frame(series, SeriesBand({"a": "1"}, 540, 60, y, y - 1, y + 1))
    assert frame.timestamp.tolist() == list(range(0, 781, 60))
    assert frame.value.notna().sum() == 10 and frame.yhat.notna().sum() == 5
    assert frame.loc[frame.timestamp == 540, "firing"].item() == 1  # 9.0 is above 4.0
    path = plot_band(frame, tmp_path / "live.png")
    assert path.read_bytes().startswith(PNG)
