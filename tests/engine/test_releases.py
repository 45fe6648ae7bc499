"""Release re-anchoring: the band is withdrawn while a release settles, then moved to the new level;
only in the directions `absorb` accepts; the backtest and `smartmetrics backtest --releases` use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmetrics.adapters.files import read_releases
from smartmetrics.app.cli import main
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.releases import (
    Burst,
    bursts,
    level_shift,
    measure_shift,
    releases_for,
    replay_releases,
)
from smartmetrics.engine.series import Series
from smartmetrics.engine.training import release_shifts, relevel
from smartmetrics.evaluation.backtest import DAY, backtest_series
from smartmetrics.evaluation.peers import ConstantBand

STEP = 300
RELEASE = 3 * DAY + 12 * 3600  # noon on day 3, mid-period


def level_series(days: int = 4, jump: float = 10.0, at: int = RELEASE, seed: int = 0) -> Series:
    """Level 10 with noise 0.2, moved by `jump` at `at`."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, STEP, dtype=np.int64)
    values = 10 + rng.normal(0, 0.2, len(t)) + np.where(t >= at, jump, 0.0)
    return Series({"job": "api"}, t, values, STEP, name="qps")


def mean_fit(train: Series, horizon: int) -> ConstantBand:
    m = float(np.nanmedian(train.values))
    return ConstantBand(m, m - 1.0, m + 1.0)


def replay(series: Series, **kw) -> pd.DataFrame:
    return backtest_series(series, mean_fit, AlertRules(default_points=2), history=DAY, **kw)


def test_without_releases_a_deploy_shift_alerts_until_the_next_retrain() -> None:
    frame = replay(level_series())
    firing = frame.loc[frame.timestamp >= RELEASE, ["timestamp", "firing"]]
    assert frame.alert.sum() == 1
    assert firing.loc[firing.timestamp < 4 * DAY, "firing"].iloc[2:].all()


def test_band_is_withdrawn_while_settling_then_moved_to_the_new_level() -> None:
    series = level_series()
    frame = replay(series, releases=(RELEASE,), settle=1800)
    assert frame.alert.sum() == 0
    t = frame.timestamp
    held = frame[(t >= RELEASE) & (t < RELEASE + 1800)]
    assert len(held) == 6 and held.yhat_upper.isna().all() and held.yhat_lower.isna().all()
    assert held.yhat.notna().all()  # kept: the shift is measured against it
    after = frame[(t >= RELEASE + 1800) & (t < 4 * DAY)]
    assert after.yhat.between(19.5, 20.5).all()
    assert np.allclose(after.yhat_upper - after.yhat, 1.0) and np.allclose(after.yhat - after.yhat_lower, 1.0)
    before = frame[(t >= 3 * DAY) & (t < RELEASE)]
    assert before.yhat.between(9.5, 10.5).all()  # the earlier part of the period is untouched


def test_a_spike_after_the_release_still_alerts() -> None:
    series = level_series()
    spike = (series.timestamps >= RELEASE + 3 * 3600) & (series.timestamps < RELEASE + 3 * 3600 + 1200)
    series.values[spike] += 15
    frame = replay(series, releases=(RELEASE,))
    onsets = frame.timestamp[frame.alert == 1].tolist()
    assert onsets == [RELEASE + 3 * 3600 + STEP]


@pytest.mark.parametrize(("absorb", "jump", "alerts"), [
    ("down", 10.0, 1), ("down", -5.0, 0), ("up", -5.0, 1), ("up", 10.0, 0), ("both", -5.0, 0),
])
def test_absorb_only_accepts_moves_in_its_direction(absorb: str, jump: float, alerts: int) -> None:
    frame = replay(level_series(jump=jump), releases=(RELEASE,), absorb=absorb)
    assert frame.alert.sum() == alerts
    if alerts:  # not absorbed: the band comes back where it was, and the alert fires after settling
        first = frame.timestamp[frame.alert == 1].iloc[0]
        assert first == RELEASE + 1800 + STEP


def test_a_release_without_data_to_measure_leaves_the_band_unmoved() -> None:
    series = level_series(jump=0.0)
    gap = (series.timestamps >= RELEASE) & (series.timestamps < RELEASE + 1800)
    series.values[gap] = np.nan
    frame = replay(series, releases=(RELEASE,))
    after = frame[(frame.timestamp >= RELEASE + 1800) & (frame.timestamp < 4 * DAY)]
    assert after.yhat.between(9.5, 10.5).all() and after.yhat_upper.notna().all()


def test_the_next_retrain_is_not_moved_again() -> None:
    base = replay(level_series(days=6))
    moved = replay(level_series(days=6), releases=(RELEASE,))
    later, band = base.timestamp >= 4 * DAY, ["yhat", "yhat_lower", "yhat_upper"]
    pd.testing.assert_frame_equal(base.loc[later, band], moved.loc[later, band])


def test_releases_before_the_first_model_or_after_the_data_change_nothing() -> None:
    series = level_series(jump=0.0)
    base = replay(series)
    pd.testing.assert_frame_equal(base, replay(series, releases=(3600, 99 * DAY)))


def test_a_burst_of_releases_is_one_settle_window_measured_after_the_last() -> None:
    assert bursts([RELEASE, RELEASE + 600, RELEASE + 5000], 1800) == [
        Burst(RELEASE, RELEASE + 600, RELEASE + 2400), Burst(RELEASE + 5000, RELEASE + 5000, RELEASE + 6800)]
    series = level_series(at=RELEASE + 600)  # the second release is the one that moved the level
    frame = replay(series, releases=(RELEASE, RELEASE + 600))
    assert frame.alert.sum() == 0
    held = frame[(frame.timestamp >= RELEASE) & (frame.timestamp < RELEASE + 2400)]
    assert held.yhat_upper.isna().all()


def test_a_change_undone_within_the_settle_window_does_not_move_the_band() -> None:
    series = level_series(jump=0.0)
    scaled = (series.timestamps >= RELEASE) & (series.timestamps < RELEASE + 900)
    series.values[scaled] += 10  # scaled up for a quarter of an hour, then back
    frame = replay(series, releases=(RELEASE,), settle=1800)
    after = frame[(frame.timestamp >= RELEASE + 1800) & (frame.timestamp < 4 * DAY)]
    assert after.yhat.between(9.5, 10.5).all()
    assert frame.alert.sum() == 0


def test_the_shift_is_the_level_at_the_end_of_a_gradual_rollout() -> None:
    series = level_series(jump=0.0)
    window = (series.timestamps >= RELEASE) & (series.timestamps < RELEASE + 1800)
    ramp = np.clip((series.timestamps - RELEASE) / 900, 0, 1)  # pods replaced over 15 minutes
    series.values[:] += np.where(series.timestamps >= RELEASE, 10 * ramp, 0.0)
    assert series.values[window][:3].mean() < 16  # the first half is still on its way up
    frame = replay(series, releases=(RELEASE,), settle=1800)
    after = frame[(frame.timestamp >= RELEASE + 1800) & (frame.timestamp < 4 * DAY)]
    assert after.yhat.between(19.5, 20.5).all()
    assert frame.alert.sum() == 0


def test_shift_is_the_median_against_the_interpolated_band() -> None:
    grid = np.array([0, 600, 1200])
    yhat = np.array([0.0, 6.0, 12.0])
    times = np.array([300, 900, 1500, 2000])
    burst = Burst(0, 0, 1800)
    assert measure_shift(burst, times, np.array([4.0, 10.0, 99.0, 0.0]), grid, yhat, min_points=2) == 1.0
    assert level_shift(np.array([1.0, 2.0]), np.array([0.0, 0.0])) is None  # too few points


def test_limits_move_with_the_band_and_stay_non_negative() -> None:
    t = np.arange(0, 4 * 3600, STEP)
    values = np.where(t >= 3600, 1.0, 6.0)
    yhat, lower, upper = np.full(len(t), 6.0), np.full(len(t), 4.0), np.full(len(t), 8.0)
    limit = np.full(len(t), 3.0)
    out = replay_releases(t, values, yhat, lower, upper, (limit,), (3600,), [(0, 4 * 3600)], settle=1800)
    after = t >= 5400
    assert np.allclose(out[0][after], 1.0) and np.allclose(out[1][after], 0.0) and np.allclose(out[3][after], 0.0)
    assert np.isnan(out[3][(t >= 3600) & (t < 5400)]).all()
    assert np.allclose(out[3][t < 3600], 3.0)


def undo(series: Series, releases: tuple, absorb: str = "both") -> tuple[list[dict], np.ndarray]:
    shifts = release_shifts(series.timestamps, series.values, releases, settle=1800, absorb=absorb)
    return shifts, relevel(series.timestamps, series.values, shifts)


def test_training_history_is_relevelled_at_a_release_and_its_settle_window_blanked() -> None:
    series = level_series()
    shifts, values = undo(series, (RELEASE,))
    t = series.timestamps
    assert [d["first"] for d in shifts] == [RELEASE] and 9.8 < shifts[0]["shift"] < 10.2
    assert np.isnan(values[(t >= RELEASE) & (t < RELEASE + 1800)]).all()
    rest = values[np.isfinite(values)]
    assert abs(np.median(rest) - 20) < 0.1 and len(rest) == len(t) - 6  # one level, nothing else lost


@pytest.mark.parametrize(("releases", "absorb", "moved"), [
    ((RELEASE,), "down", False),            # an upward move is not accepted: the history keeps its level
    ((RELEASE, 9 * DAY), "up", True),       # a release after the data is not known yet
    ((4 * DAY - 600,), "both", False),      # still settling at the end of the data: the daemon settles it
])
def test_only_settled_accepted_shifts_relevel_training(releases: tuple, absorb: str, moved: bool) -> None:
    series = level_series()
    shifts, values = undo(series, releases, absorb)
    level = float(np.nanmedian(values[series.timestamps < RELEASE]))
    assert abs(level - (20 if moved else 10)) < 0.1
    assert [d["first"] for d in shifts] == [r for r in releases if r <= series.end]
    assert np.isnan(values[series.timestamps >= releases[0]][:3]).all()


def test_a_fit_told_of_a_release_late_in_its_history_forecasts_the_new_level() -> None:
    from smartmetrics.engine.ensemble import FitSettings, fit_series

    end = 5 * DAY
    series = level_series(days=5, at=end - 90 * 60)  # too little after it for the shift finder
    blind = fit_series(series, FitSettings())
    told = fit_series(series, FitSettings(), (end - 90 * 60,))
    assert blind.upper[0] < 15  # the new level of 20 would alert all day
    assert told.lower[0] < 20 < told.upper[0] and told.lower[0] > 15
    assert told.training["releases"][0]["shift"] > 9


def test_backtest_fits_learn_a_release_just_before_their_retrain() -> None:
    from smartmetrics.evaluation.evaluate import smartmetrics_fit

    for at, held in ((4 * DAY - 3600, 0), (4 * DAY - 600, 4)):  # settled before the retrain, and across it
        series = level_series(days=5, at=at)
        blind = backtest_series(series, smartmetrics_fit("medium"), AlertRules(default_points=2))
        told = backtest_series(series, smartmetrics_fit("medium", (at,)), AlertRules(default_points=2), releases=(at,))
        next_day = (told.timestamp >= 4 * DAY).to_numpy()
        assert blind.firing[next_day].sum() > 100
        assert told.firing.sum() == 0
        assert told.yhat_upper[next_day].isna().sum() == held  # the part of the settle time after the retrain
        banded = next_day & told.yhat_upper.notna().to_numpy()
        assert told.yhat[banded].between(19, 21).all()


def test_read_releases_accepts_seconds_dates_headers_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "deploys.csv"
    path.write_text("timestamp,version\n# rollouts\n1714572000,v2\n\n2024-05-01 16:00:00\n2024-05-01T18:00:00+02:00\n")
    assert read_releases(path) == (1714572000, 1714579200, 1714579200)
    path.write_text("1714572000\nyesterday-ish\n")
    with pytest.raises(ValueError, match=r"deploys.csv:2: 'yesterday-ish'"):
        read_releases(path)


def test_backtest_cli_with_releases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    series = level_series()
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"timestamp": pd.to_datetime(series.timestamps, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                  "value": series.values}).to_csv(src, index=False)
    deploys = tmp_path / "deploys.txt"
    deploys.write_text(pd.Timestamp(RELEASE, unit="s").strftime("%Y-%m-%d %H:%M:%S") + "\n")
    assert main(["backtest", str(src), "--out", str(out)]) == 0
    plain = pd.read_csv(out)
    assert main(["backtest", str(src), "--out", str(out), "--releases", str(deploys)]) == 0
    moved = pd.read_csv(out)
    after = pd.to_datetime(moved.timestamp) >= pd.Timestamp(RELEASE + 1800, unit="s")
    assert plain.firing[after].sum() > 0 and moved.firing[after].sum() < plain.firing[after].sum()
    capsys.readouterr()
    assert main(["backtest", str(src), "--out", str(out), "--releases", str(tmp_path / "missing")]) == 2
    assert "--releases" in capsys.readouterr().err


def test_bad_release_config_names_each_field() -> None:
    from smartmetrics.config import ConfigError, parse_config

    data = {"sources": {"p": {"url": "http://x"}},
            "baselines": {"q": {"expr": "up", "releases": {"expr": " ", "settle": "0s", "absorb": "sideways"}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    problems = "\n".join(info.value.problems)
    assert "baselines.q.releases.expr: must not be empty" in problems
    assert "baselines.q.releases.settle: settle must be more than 0s and at most 1d" in problems
    assert "baselines.q.releases.absorb:" in problems and "'sideways'" in problems
    ok = parse_config({**data, "baselines": {"q": {"expr": "up", "releases": {"expr": "changes(x[5m]) > 0"}}}})
    assert ok.baselines["q"].releases.settle == 1800 and ok.baselines["q"].releases.absorb == "both"


def test_daemon_reads_release_markers_from_a_real_prometheus(tmp_path: Path, prometheus_binaries) -> None:
    """`changes(generation[5m]) > 0` over a backfilled Kubernetes-style generation gauge: one release per
    rollout, at the first step that sees it, with the deployment's labels."""
    import time

    import yaml

    from smartmetrics.app.daemon import Daemon
    from smartmetrics.app.promlocal import LocalPrometheus, MetricSeries
    from smartmetrics.engine.series import align_down

    end = align_down(time.time(), 60)
    ts = np.arange(end - 6 * 3600, end + 1, 60, dtype=np.int64)
    rollouts = {"api": [end - 5 * 3600 + 90, end - 2 * 3600 + 30], "worker": [end - 3 * 3600]}
    series = [MetricSeries("kube_deployment_status_observed_generation", {"deployment": name},
                           ts, 1.0 + np.searchsorted(np.array(times), ts, side="right"))
              for name, times in rollouts.items()]
    with LocalPrometheus(series) as prom:
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({
            "sources": {"p": {"url": prom.url}},
            "baselines": {"qps": {"expr": "up", "step": "5m", "history": "1d", "releases": {
                "expr": "changes(kube_deployment_status_observed_generation[5m]) > 0", "match": ["deployment"]}}},
            "store": {"path": str(tmp_path / "models")},
        }))
        daemon = Daemon(str(config), workers=1)
        try:
            found = daemon.release_markers("qps", end - 6 * 3600, end)
        finally:
            daemon._pool.close()
    seen = sorted((labels["deployment"], t) for labels, t in found)
    expected = sorted((name, t) for name, times in rollouts.items() for t in times)
    assert [name for name, _ in seen] == [name for name, _ in expected]
    for (_, got), (_, at) in zip(seen, expected):
        assert at <= got <= at + 300 + 60  # the first 5m step whose [5m] range holds the change
    assert releases_for({"deployment": "worker", "pod": "w-1"}, found, ["deployment"]) == [seen[2][1]]
