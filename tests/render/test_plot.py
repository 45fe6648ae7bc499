"""`smartmetrics plot`: PNGs from a backtest table, a plain CSV, and a live baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmetrics.app.cli import main
from smartmetrics.app.plot_cli import unit_of_csv
from smartmetrics.engine.series import Series
from smartmetrics.engine.state import SeriesBand
from smartmetrics.evaluation.synth import make_series
from smartmetrics.render.plots import MIN_RELATIVE_SPAN, plot_band, render_band_figure, render_live_frame
from smartmetrics.render.units import parse_given_unit, parse_unit

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
    assert main(["plot", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.png")]) == 2  # bad usage
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


def band_frame(values: np.ndarray, half: float, step: int = 300, start: int = 1_700_000_000) -> pd.DataFrame:
    """A backtest table: `values` with a band of `half` around their median, no alerts."""
    ts = start + step * np.arange(len(values), dtype=np.int64)
    y = np.full(len(values), float(np.median(values)))
    return pd.DataFrame({"timestamp": ts, "value": values, "yhat": y, "yhat_lower": y - half,
                         "yhat_upper": y + half, "firing": 0, "alert": 0})


def legend_labels(fig) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_the_y_axis_says_its_unit() -> None:
    frame = band_frame(0.2 + 0.05 * np.sin(np.arange(288) / 20), 0.02)
    fig = render_band_figure(frame, unit=parse_unit("histogram_quantile(0.99, rate(x_seconds_bucket[5m]))"))
    ax = fig.axes[0]
    fig.canvas.draw()
    assert "seconds" in ax.get_ylabel()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(t.endswith("ms") for t in ticks), ticks  # 200 ms, not 0.2
    ratio = render_band_figure(band_frame(np.full(50, 0.02), 0.01), unit=parse_unit("error_ratio"))
    ratio.canvas.draw()
    assert all(t.get_text().endswith("%") for t in ratio.axes[0].get_yticklabels() if t.get_text())


def test_plot_csv_takes_the_unit_from_the_file_name(tmp_path: Path) -> None:
    frame = band_frame(0.2 + 0.05 * np.sin(np.arange(288) / 20), 0.02)
    frame.to_csv(tmp_path / "p99_latency_seconds.csv", index=False)
    assert main(["plot", str(tmp_path / "p99_latency_seconds.csv"), "--out", str(tmp_path / "p.png")]) == 0
    assert unit_of_csv(str(tmp_path / "p99_latency_seconds.csv")) == parse_unit("x_seconds")


def test_a_near_constant_series_keeps_its_band_in_proportion() -> None:
    """Issue 24: 0.92985-0.93015 drawn on an axis 0.92985-0.93015 makes a band of 0.0001 fill the plot."""
    values = 0.93 + 0.00015 * np.sin(np.arange(288) / 7)
    fig = render_band_figure(band_frame(values, 0.0001))
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    assert hi - lo >= MIN_RELATIVE_SPAN * 0.93 and lo <= values.min() and hi >= values.max()
    assert 0.0002 / (hi - lo) < 0.05  # the band is a sliver, as it is next to the level
    assert ax.yaxis.get_offset_text().get_text() == ""  # ticks read 0.93, not 1e-4 + 9.3e-1
    wide = render_band_figure(band_frame(10 + 5 * np.sin(np.arange(288) / 20), 1.0))
    lo, hi = wide.axes[0].get_ylim()
    assert hi - lo < 20  # a series that moves keeps the autoscaled axis


def test_the_legend_lists_only_what_is_drawn() -> None:
    frame = band_frame(np.linspace(1, 2, 100), 0.1).assign(yhat=np.nan, yhat_lower=np.nan, yhat_upper=np.nan)
    assert legend_labels(render_band_figure(frame)) == ["value"]
    one = band_frame(np.linspace(1, 2, 100), 0.1)
    one.loc[50, ["firing", "alert"]] = 1
    fig = render_band_figure(one)
    assert legend_labels(fig) == ["band (yhat_lower .. yhat_upper)", "yhat", "value", "alert firing", "alert starts"]
    span = next(p for p in fig.axes[0].patches if p.get_label() == "alert firing")
    fig.canvas.draw()
    assert span.get_window_extent().width >= 1  # one point firing still shows, one step wide


def test_live_frame_draws_the_band_on_a_history_off_its_grid() -> None:
    """The stored table's grid need not be the fetched history's: the band is interpolated onto the
    history where the table covers it, as the exporter serves it."""
    series = Series({"a": "1"}, np.arange(0, 600, 60), np.full(10, 3.0), 60)
    y = np.full(8, 3.0)
    frame = render_live_frame(series, SeriesBand({"a": "1"}, 270, 60, y, y - 1, y + 1))
    history = frame[frame.value.notna()]
    assert history.yhat.notna().tolist() == [False] * 5 + [True] * 5  # 300..540 are inside 270..690
    assert frame.timestamp.is_monotonic_increasing and frame.timestamp.max() == 690
    assert frame.firing.sum() == 0
    fig = render_band_figure(frame)
    assert "band (yhat_lower .. yhat_upper)" in legend_labels(fig)
    assert "alert firing" not in legend_labels(fig)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert any("band from" in t for t in notes), notes  # says why the earlier history has no band


def test_live_frame_shades_what_the_alert_fires_not_every_point_outside() -> None:
    """`plot --config` labels its shading "alert firing": a point just outside the band, under the
    sensitivity's score threshold, is not an alert."""
    from smartmetrics.app.plot_cli import render_alert_columns
    from smartmetrics.config import parse_config

    baseline = parse_config({"sources": {"p": {"url": "http://x:1"}},
                             "baselines": {"q": {"expr": "x", "step": "1m"}}}).baselines["q"]
    values = np.full(20, 3.0)
    values[5] = 4.1  # score 1.1: outside, under medium's threshold
    values[12:15] = 9.0  # far outside
    series = Series({"a": "1"}, np.arange(0, 1200, 60), values, 60)
    y = np.full(20, 3.0)
    frame = render_live_frame(series, SeriesBand({"a": "1"}, 0, 60, y, y - 1, y + 1))
    assert frame.firing[5] == 1
    fired = render_alert_columns(frame, series, baseline)
    assert fired.firing[5] == 0 and fired.firing[12:15].all() and fired.alert.sum() == 1


def test_a_given_unit_wins_over_the_name(tmp_path: Path) -> None:
    frame = band_frame(np.linspace(1, 2, 100), 0.1)
    frame.to_csv(tmp_path / "x_seconds.csv", index=False)
    assert main(["plot", str(tmp_path / "x_seconds.csv"), "--out", str(tmp_path / "x.png"), "--unit", "requests"]) == 0
    fig = render_band_figure(frame, unit=parse_given_unit("requests"))
    assert fig.axes[0].get_ylabel() == "requests"


def test_last_counts_back_from_the_latest_value_and_keeps_the_forecast() -> None:
    """`plot --config --last 2m` showed only the forecast: the window ended where the table does."""
    series = Series({"a": "1"}, np.arange(0, 600, 60), np.full(10, 3.0), 60)
    y = np.full(12, 3.0)
    frame = render_live_frame(series, SeriesBand({"a": "1"}, 300, 60, y, y - 1, y + 1))
    fig = render_band_figure(frame, last=120)
    value = next(line for line in fig.axes[0].lines if line.get_label() == "value")
    shown = np.round(value.get_xdata(orig=False) * 86400).astype(np.int64)  # matplotlib's days since 1970
    drawn = [t for t, v in zip(shown, value.get_ydata()) if np.isfinite(v)]
    assert drawn == [420, 480, 540]
    assert shown.max() == 300 + 60 * 11  # the forecast after the history is still drawn


def test_date_string_timestamps_are_read_as_dates_and_last_is_honoured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: a `backtest` table (UTC date strings) was squeezed into 20 minutes of 1970."""
    from smartmetrics.app import plot_cli

    start = 1_717_200_000  # 2024-06-01 00:00 UTC
    ts = start + 300 * np.arange(14 * 288)
    y = np.sin(np.arange(len(ts)) / 40.0) + 10
    frame = pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="s").strftime("%Y-%m-%d %H:%M:%S"), "value": y,
                          "yhat": y, "yhat_lower": y - 1, "yhat_upper": y + 1, "anomaly_score": 0.0,
                          "firing": 0, "alert": 0, "alerts": ""})
    frame.to_csv(tmp_path / "replay.csv", index=False)
    drawn: list[pd.DataFrame] = []

    def spy(frame: pd.DataFrame, path: Path, *, title: str, last: float | None, unit=None) -> Path:
        drawn.append(frame[frame.timestamp >= frame.timestamp.max() - last] if last else frame)
        return plot_band(frame, path, title=title, last=last, unit=unit)

    monkeypatch.setattr(plot_cli, "plot_band", spy)
    assert main(["plot", str(tmp_path / "replay.csv"), "--out", str(tmp_path / "p.png"), "--last", "2d"]) == 0
    assert drawn[0].timestamp.max() == ts[-1]
    assert drawn[0].timestamp.min() == ts[-1] - 2 * 86400 and len(drawn[0]) == 2 * 288 + 1
