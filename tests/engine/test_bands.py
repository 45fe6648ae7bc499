"""Band calibration, sensitivity policy and the anomaly score."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.bands import anomaly_score, apply_band, band_policy, calibrate, tail_quantile


@pytest.mark.parametrize(("coverage", "n_cal", "tol"), [(0.9, 2000, 0.01), (0.98, 2000, 0.004), (0.995, 576, 0.003)])
def test_conformal_coverage_on_iid_noise_is_near_nominal(coverage: float, n_cal: int, tol: float) -> None:
    achieved = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cal = calibrate(rng.normal(size=n_cal), np.arange(n_cal), coverage)
        fresh = rng.normal(size=20000)
        achieved.append(np.mean((fresh >= cal.q_lo) & (fresh <= cal.q_hi)))
    assert abs(np.mean(achieved) - coverage) < tol


def test_skewed_residuals_give_an_asymmetric_band_within_a_factor_of_two() -> None:
    z = np.random.default_rng(1).exponential(size=3000) - 1.0
    cal = calibrate(z, np.arange(3000), 0.99)
    assert cal.q_hi == pytest.approx(2 * abs(cal.q_lo))  # the wider side as the residuals say, the other half
    assert cal.q_hi > 4.0  # the exponential's upper tail at 0.5%
    for z in (-z, np.random.default_rng(2).normal(size=5000) - 2.5):  # skewed the other way; a dip's aftermath
        cal = calibrate(z, np.arange(len(z)), 0.99)
        assert cal.q_hi >= 0.5 * abs(cal.q_lo) - 1e-12  # however many residuals: few days are no proof of skew


def test_one_biased_day_of_residuals_keeps_both_sides_at_least_half_as_wide() -> None:
    z = np.random.default_rng(3).normal(size=288) - 2.5  # a young model that over-predicted all day
    cal = calibrate(z, np.arange(288), 0.9995)
    assert cal.q_hi >= 0.5 * abs(cal.q_lo) > 0


def test_bucket_factors_widen_the_noisier_hours() -> None:
    rng = np.random.default_rng(2)
    t = 300 * np.arange(2880)
    noisy_hours = (t % 86400) < 21600
    z = rng.normal(size=2880) * np.where(noisy_hours, 3.0, 1.0)
    cal = calibrate(z, t, 0.95, period=86400, buckets=4)
    assert cal.bucket_factors[0] > 1.5 > cal.bucket_factors[2]
    assert cal.factors_at(np.array([3600, 50000])).tolist() == [cal.bucket_factors[0], cal.bucket_factors[2]]


def test_tail_quantile_extrapolates_beyond_the_data() -> None:
    x = np.random.default_rng(4).exponential(size=200)
    assert tail_quantile(x, 0.0005) == pytest.approx(np.log(2000), rel=0.25)


def test_anomaly_score_is_scaled_per_side() -> None:
    yhat, lower, upper = 10.0, 8.0, 14.0
    values = np.array([10.0, 14.0, 8.0, 12.0, 9.0, 18.0, 4.0, np.nan])
    assert anomaly_score(values, yhat, lower, upper)[:7].tolist() == [0.0, 1.0, 1.0, 0.5, 0.5, 2.0, 3.0]
    assert np.isnan(anomaly_score(values, yhat, lower, upper)[7])


def test_anomaly_score_with_a_zero_width_side() -> None:
    assert anomaly_score(np.array([0.0, 1.0]), 0.0, 0.0, 0.0).tolist() == [0.0, np.inf]


def test_band_is_clipped_at_the_floor_and_at_least_min_wide() -> None:
    yhat, lower, upper = apply_band(np.array([1.0, 5.0]), np.array([1.0, 0.001]), np.array([-3.0, -3.0]),
                                    np.array([3.0, 3.0]), np.array([0.5, 0.5]), floor=0.0)
    assert lower.tolist() == [0.0, 4.5] and upper.tolist() == [4.0, 5.5]


def test_sensitivity_orders_coverage_and_rejects_nonsense() -> None:
    assert band_policy("low").coverage > band_policy("medium").coverage > band_policy("high").coverage
    assert band_policy(0.2).coverage > band_policy(0.5).coverage > band_policy(0.9).coverage
    assert band_policy(0.5).coverage == pytest.approx(band_policy("medium").coverage, abs=0.0002)
    for bad in ("loud", 0.0, 1.0):
        with pytest.raises(ValueError):
            band_policy(bad)


def test_policy_keeps_firing_longer_at_lower_sensitivity() -> None:
    keeps = [band_policy(s).keep_firing_for for s in ("low", "medium", "high")]
    assert keeps[0] > keeps[1] > keeps[2] > 0
    assert band_policy(0.2).keep_firing_for >= band_policy(0.5).keep_firing_for >= band_policy(0.9).keep_firing_for
    assert band_policy("medium").keep_points(300) == 24 and band_policy("medium").keep_points(7) == 1029
    thresholds = [band_policy(s).threshold for s in ("low", "medium", "high")]
    assert thresholds[0] > thresholds[1] > thresholds[2] >= 1.0


def test_a_one_off_at_a_recurring_time_does_not_set_how_far_the_band_reaches() -> None:
    """Yesterday's incident stays yesterday's: a nightly job peaks at 9 every night; the one night it
    reached 50 must not widen every following night's band to 50."""
    from smartmetrics.engine.bands import recurring_excursions
    from smartmetrics.engine.series import Series

    t = np.arange(0, 10 * 86400, 600)
    values = np.where(t % 86400 == 7200, 9.0, 1.0)
    values[np.flatnonzero(t == 8 * 86400 + 7200)] = 50.0  # the incident, two days ago
    ts = 10 * 86400 + np.arange(1, 145) * 600
    _, upper = recurring_excursions(np.zeros(144), np.full(144, 2.0), ts, Series({}, t, values, 600))
    assert upper.max() == 9.0  # the job's usual peak is covered, the incident's is not


def test_an_unseen_weekend_may_begin_on_friday_evening_and_end_on_monday_morning() -> None:
    """Before the first weekend, its edges are not known to the hour either: users' Friday evening,
    a time zone hours from UTC. Friday noon keeps its band; Friday 20:00 and Monday 03:00 may dip."""
    from smartmetrics.engine.bands import first_week_priors
    from smartmetrics.engine.series import Series

    monday = 4 * 86400  # 1970-01-05 was a Monday
    train = Series({}, np.arange(monday, monday + 4 * 86400, 3600), np.full(96, 10.0), 3600)  # Mon-Thu
    ts = monday + np.array([4 * 86400 + 12 * 3600, 4 * 86400 + 20 * 3600, 7 * 86400 + 3 * 3600,
                            7 * 86400 + 12 * 3600])  # Fri 12:00, Fri 20:00, Mon 03:00, Mon 12:00
    lower, upper = first_week_priors(np.full(4, 9.0), np.full(4, 11.0), np.full(4, 10.0), ts, train)
    assert lower.tolist() == [9.0, 5.0, 5.0, 9.0]
    assert upper.tolist() == [11.0] * 4
