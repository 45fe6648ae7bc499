"""Walk-forward backtest: no look-ahead, exact columns, cold-start rows, `for` logic, onsets, direction, feedback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmetrics.engine.alerts import AlertRecord, feedback_factors, feedback_schedule
from smartmetrics.engine.firing import AlertRules, anomaly_condition, firing_and_onsets
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.backtest import (
    COLUMNS,
    DAY,
    assemble_frame,
    backtest_live,
    backtest_series,
    replay_alerts,
    walk_forward_band,
)
from smartmetrics.evaluation.peers import ConstantBand

STEP = 3600


def hourly(days: int, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, STEP, dtype=np.int64)
    return Series({"job": "x"}, t, 10 + rng.normal(0, 1, len(t)), STEP, name="x")


def points(n: int, **kw) -> AlertRules:
    """Alert after `n` points outside the band in a row, at the band edge (score threshold 1)."""
    return AlertRules(default_points=n, **kw)


def mean_fit(train: Series, horizon: int) -> ConstantBand:
    m = float(np.nanmean(train.values))
    return ConstantBand(m, m - 1.0, m + 1.0)


def test_model_never_sees_data_at_or_after_the_period_it_predicts() -> None:
    seen: list[tuple[int, int, int]] = []

    def spy(train: Series, horizon: int) -> ConstantBand:
        seen.append((int(train.timestamps.min()), int(train.timestamps.max()), horizon))
        return mean_fit(train, horizon)

    series = hourly(5)
    backtest_series(series, spy, points(1), retrain_every=DAY, history=2 * DAY)
    assert [end for _, end, _ in seen] == [k * DAY - STEP for k in range(1, 5)]
    assert all(start >= end + STEP - 2 * DAY for start, end, _ in seen)  # trailing history only
    assert all(end + horizon >= end + DAY for _, end, horizon in seen)


@pytest.mark.parametrize(("min_history", "fits_at"), [
    (DAY, [34, 48, 72, 96]),  # its first band a day after its first point, as discovery gives it
    (3 * STEP, [22, 24, 38, 48, 72, 96]),  # from MIN_YOUNG points; refitted as its history doubles, then daily
])
def test_the_replay_gives_a_series_its_bands_when_the_daemon_would(min_history: int, fits_at: list[int]) -> None:
    """A series whose first point comes at 10:00: the daemon's discovery gives it its band once it has
    `min_history` (`first_band`), not at the first midnight after it; young bands are refitted as their
    history doubles (`engine.state.growing`). Every fit predicts up to the next one, on data before it."""
    from smartmetrics.evaluation.backtest import first_band

    series = hourly(5)
    series = Series(series.labels, series.timestamps[10:], series.values[10:], STEP)
    seen: list[tuple[int, int]] = []

    def spy(train: Series, horizon: int) -> ConstantBand:
        seen.append((int(train.timestamps.max()) + STEP, horizon))
        return mean_fit(train, horizon)

    young = first_band(STEP, min_history)
    band = walk_forward_band(series, spy, retrain_every=DAY, history=14 * DAY, min_history=DAY, young=young)
    assert [at // STEP for at, _ in seen] == fits_at
    assert [b // STEP for b, _ in band.periods] == fits_at
    assert all(at + horizon - STEP == stop for (at, horizon), (_, stop) in zip(seen, band.periods, strict=True))
    banded = series.timestamps[np.isfinite(band.upper)]
    assert banded[0] == 10 * STEP + young


def test_changing_the_future_does_not_change_earlier_bands() -> None:
    series = hourly(4)
    base = backtest_series(series, mean_fit, points(1), retrain_every=DAY, history=3 * DAY)
    poisoned = series.values.copy()
    poisoned[series.timestamps >= 2 * DAY] = 1e9
    other = backtest_series(
        Series(series.labels, series.timestamps, poisoned, STEP), mean_fit, points(1),
        retrain_every=DAY, history=3 * DAY,
    )
    upto = series.timestamps < 3 * DAY  # day 2's band was fitted on days 0-1 only
    pd.testing.assert_series_equal(base["yhat_upper"][upto], other["yhat_upper"][upto])
    assert not np.allclose(base["yhat_upper"][~upto], other["yhat_upper"][~upto])


def test_exact_columns_and_cold_start_rows() -> None:
    series = hourly(3)
    frame = backtest_series(series, mean_fit, points(2), retrain_every=DAY, history=14 * DAY)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == len(series)
    cold = frame[frame["timestamp"] < DAY]
    assert len(cold) == 24
    assert cold[["yhat", "yhat_lower", "yhat_upper", "anomaly_score"]].isna().all().all()
    assert (cold["firing"] == 0).all() and (cold["alert"] == 0).all()
    assert frame.loc[frame["timestamp"] >= DAY, "yhat"].notna().all()


def test_for_logic_needs_consecutive_points_and_nan_breaks_the_run() -> None:
    outside = anomaly_condition(
        np.array([5.0, 5.0, np.nan, 5.0, 5.0, 5.0, 0.0, 5.0]), np.zeros(8), np.zeros(8) - 1, np.ones(8), points(1)
    )
    firing, onset = firing_and_onsets(outside, 2)
    assert firing.astype(int).tolist() == [0, 1, 0, 0, 1, 1, 0, 0]
    assert onset.astype(int).tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    firing, onset = firing_and_onsets(outside, 3)
    assert firing.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert onset.sum() == 1


@pytest.mark.parametrize(
    ("direction", "expected"), [("both", [1, 0, 1]), ("up", [1, 0, 0]), ("down", [0, 0, 1])]
)
def test_direction(direction: str, expected: list[int]) -> None:
    series = Series({}, np.arange(3, dtype=np.int64), np.array([5.0, 0.0, -5.0]), 1)
    frame = assemble_frame(series, np.zeros(3), -np.ones(3), np.ones(3), points(1, direction=direction))
    assert frame["firing"].tolist() == expected
    assert frame["anomaly_score"].tolist() == [5.0, 0.0, 5.0]


def test_an_excursion_fires_once_and_alert_marks_the_onset() -> None:
    series = hourly(3, seed=1)
    values = series.values.copy()
    values[60:66] = 100.0
    frame = backtest_series(
        Series(series.labels, series.timestamps, values, STEP), mean_fit, points(3),
        retrain_every=DAY, history=DAY,
    )
    assert frame["alert"].sum() >= 1
    assert frame["alert"].iloc[62] == 1 and frame["firing"].iloc[62:66].eq(1).all()
    assert frame["firing"].iloc[60:62].eq(0).all()


def test_live_band_is_blanked_before_the_first_retrain() -> None:
    series = hourly(3)

    def band(s: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(len(s)), np.full(len(s), -100.0), np.full(len(s), 100.0)

    frame = backtest_live(series, band, points(1))
    assert frame["yhat"].isna().sum() == 24 and frame["yhat"].iloc[24:].eq(0).all()


def test_keep_firing_for_merges_the_onsets_of_one_flapping_incident() -> None:
    outside = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    _, flapping = firing_and_onsets(outside, 1)
    assert flapping.sum() == 4
    firing, onset = firing_and_onsets(outside, 1, keep_points=3)
    assert onset.astype(int).tolist() == [0, 1] + [0] * 10 + [1, 0]  # gap of 4 > 3 points: a new alert
    assert firing[1:11].all() and not firing[11] and firing[12:].all()


def test_keep_firing_for_does_not_bypass_the_for_duration() -> None:
    outside = np.array([1, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
    firing, onset = firing_and_onsets(outside, 2, keep_points=2)
    assert firing.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert onset.sum() == 1


def test_score_threshold_moves_the_alerting_edges() -> None:
    series = Series({}, np.arange(4, dtype=np.int64), np.array([1.5, 2.5, -1.5, -2.5]), 1)
    frame = assemble_frame(series, np.zeros(4), -np.ones(4), np.ones(4), points(1, threshold=2.0))
    assert frame["firing"].tolist() == [0, 1, 0, 1]
    assert frame["anomaly_score"].tolist() == [1.5, 2.5, 1.5, 2.5]


def test_feedback_widens_only_the_retrains_after_it_was_given_and_only_its_side() -> None:
    series = hourly(6)
    given = 3 * DAY + 5 * STEP  # during the fourth day: the retrain at day 4 is the first to see it
    noise = AlertRecord("n", "b", "f", {}, series.key, given - 3600.0, value=12.5, yhat=10.0, lower=9.0,
                        upper=11.0, side="above", feedback="noise", feedback_at=float(given))
    widen = feedback_schedule([noise], "b", series.key)
    plain = walk_forward_band(series, mean_fit, retrain_every=DAY, history=2 * DAY, min_history=DAY)
    wider = plain.with_feedback(series, widen)
    before = series.timestamps < 4 * DAY
    assert np.array_equal(wider.upper[before], plain.upper[before], equal_nan=True)  # no look-ahead
    half, wide = plain.upper - plain.yhat, wider.upper - wider.yhat
    factor = feedback_factors([noise], "b")[series.key]["above"]
    assert factor > 1 and np.allclose(wide[~before], factor * half[~before])
    assert np.array_equal(wider.lower, plain.lower, equal_nan=True)
    assert [start for start, _ in wider.widened] == [4 * DAY, 5 * DAY]
    frame = backtest_series(series, mean_fit, points(1), history=2 * DAY, widen=widen)
    assert np.allclose(frame.yhat_upper[~before], wider.upper[~before])
    assert plain.with_feedback(series, None) is plain


def test_no_stuck_or_sustained_alert_where_the_band_is_withdrawn() -> None:
    """The exporter serves the stuck limit and the mean limits only with a band: during a maintenance
    window the generated stuck and sustained rules match nothing, and the replay must agree."""
    t = np.arange(0, 4 * 3600, 300)
    values = np.r_[np.arange(12.0), np.full(len(t) - 12, 5.0)]  # moves, then holds for three hours
    series = Series({}, t, values, 300)
    band = np.full(len(t), 5.0), np.full(len(t), 0.0), np.full(len(t), 20.0)
    rules = AlertRules.of_sensitivity("medium")
    limits = {"stuck_after": np.full(len(t), 1800.0), "mean_upper": np.full(len(t), 1.0)}
    served = replay_alerts(series, *band, rules, **limits)
    assert served.by_kind["stuck"].any() and served.by_kind["sustained"].any()
    withdrawn = [np.where(t >= 3600, np.nan, b) for b in band]  # from when the value holds
    hidden = replay_alerts(series, *withdrawn, rules, **limits)
    assert not hidden.by_kind["stuck"].any()
    assert not hidden.by_kind["sustained"][t >= 3600 + 2 * 3600].any()  # beyond keep_firing_for


def test_a_backtest_with_less_than_a_day_of_history_still_has_bands(tmp_path) -> None:
    """`backtest --history 12h`: the fits learn for the history they are given, not for a day they
    can never have (every band was withheld)."""
    from smartmetrics.evaluation.evaluate import run_backtest_series

    rng = np.random.default_rng(1)
    t = np.arange(0, 4 * DAY, 300, dtype=np.int64)
    series = Series({"job": "x"}, t, 50 + rng.normal(0, 1, len(t)), 300)
    frame = run_backtest_series(series, tmp_path / "out.csv", sensitivity="medium", retrain_every=DAY,
                                history=12 * 3600)
    banded = frame["yhat_upper"].notna()
    assert banded.sum() >= 3 * DAY // 300 and frame["timestamp"][banded].iloc[0] == 12 * 3600
