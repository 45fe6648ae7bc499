"""fit_series: member selection, purity, cleaning, cold start and the forecast table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smartmetrics.engine.bands import anomaly_score, band_policy
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, _recurring_blips, fit_series, weigh
from smartmetrics.engine.firing import rule_score
from smartmetrics.engine.models import MODELS
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.synth import make_series

DAY = 86400
STEP = 300
EPOCH = 1_704_067_200


def make(days: float = 14, seed: int = 0, kind: str = "seasonal", noise: float = 3.0) -> Series:
    """Seeded test curves: a daily cycle, a flat level, or a sparse counter."""
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(int(days * DAY / STEP), dtype=np.int64)
    if kind == "seasonal":
        y = 100 + 40 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, noise, len(t))
    elif kind == "stable":
        y = 50 + rng.normal(0, noise, len(t))
    else:
        y = np.where(rng.random(len(t)) < 0.05, rng.integers(1, 6, len(t)).astype(float), 0.0)
    return Series({"job": kind}, t, y, STEP)


def width(fit: FittedSeries) -> float:
    return float(np.median(fit.upper - fit.lower))


class Boom:
    """A model that always raises, to prove one failure never fails a fit."""

    name = "boom"

    def fit(self, series: Series) -> Boom:
        raise RuntimeError("boom")


@pytest.fixture(scope="module")
def seasonal_fit() -> FittedSeries:
    return fit_series(make(), FitSettings())


def test_table_covers_the_horizon_and_band_at_is_nan_outside(seasonal_fit: FittedSeries) -> None:
    s = make()
    assert seasonal_fit.timestamps[0] == s.end + STEP and seasonal_fit.timestamps[-1] == s.end + DAY
    assert np.all(seasonal_fit.lower <= seasonal_fit.yhat) and np.all(seasonal_fit.yhat <= seasonal_fit.upper)
    yhat, lower, upper = seasonal_fit.band_at(np.array([s.end, s.end + STEP + STEP / 2, s.end + DAY + STEP]))
    assert np.isnan(yhat[0]) and np.isnan(upper[2]) and np.isnan(lower[0])
    assert yhat[1] == pytest.approx((seasonal_fit.yhat[0] + seasonal_fit.yhat[1]) / 2)


def test_band_covers_the_next_day_and_follows_the_cycle(seasonal_fit: FittedSeries) -> None:
    nxt = make(days=15)
    truth = nxt.values[-DAY // STEP:]
    inside = (truth >= seasonal_fit.lower) & (truth <= seasonal_fit.upper)
    assert inside.mean() > 0.97
    assert 15 < width(seasonal_fit) < 40  # about +-2.8 sigma of noise 3, not the 80-wide daily swing
    assert seasonal_fit.classification["curve_type"] == "seasonal"


def test_json_round_trip(seasonal_fit: FittedSeries) -> None:
    again = FittedSeries.from_dict(json.loads(json.dumps(seasonal_fit.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(again.upper, seasonal_fit.upper)
    assert again.members == seasonal_fit.members and again.labels == {"job": "seasonal"}


def test_pure_same_input_same_output(seasonal_fit: FittedSeries) -> None:
    assert fit_series(make(), FitSettings()).to_dict() == seasonal_fit.to_dict()


def test_a_failing_member_is_dropped_and_weights_sum_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "boom", Boom)
    fit = fit_series(make(days=3, kind="stable"), FitSettings(models=("boom", "level", "profile_day")))
    names = {m["name"] for m in fit.members}
    assert "boom" not in names and names <= {"level", "profile_day"}
    assert sum(m["weight"] for m in fit.members) == pytest.approx(1.0)
    only_boom = fit_series(make(days=3, kind="stable"), FitSettings(models=("boom",)))
    assert [m["name"] for m in only_boom.members] == ["fallback"] and np.all(np.isfinite(only_boom.upper))


def test_weigh_drops_clearly_bad_members() -> None:
    weights = weigh({"good": {"loss": 1.0}, "ok": {"loss": 1.2}, "bad": {"loss": 5.0}})
    assert set(weights) == {"good", "ok"} and weights["good"] > weights["ok"]


def test_cold_start_is_wider_than_full_history() -> None:
    cold = fit_series(make(days=1, seed=5, kind="stable"), FitSettings())
    warm = fit_series(make(days=14, seed=5, kind="stable"), FitSettings())
    assert width(cold) > 1.2 * width(warm)
    assert np.all(np.isfinite(cold.upper))


def test_an_incident_in_training_does_not_widen_the_band() -> None:
    clean = make(seed=7)
    values = clean.values.copy()
    values[-DAY // STEP + 40: -DAY // STEP + 76] += 150.0  # a 3-hour incident yesterday
    values[-300:-290] -= 120.0
    dirty = Series(clean.labels, clean.timestamps, values, STEP)
    a, b = fit_series(clean, FitSettings()), fit_series(dirty, FitSettings())
    assert width(b) < 1.15 * width(a)
    assert np.max(np.abs(b.yhat - a.yhat)) < 5.0



def test_an_eight_hour_incident_is_masked_not_taken_for_heavy_tails() -> None:
    clean = make(kind="stable", seed=3)
    values = clean.values.copy()
    values[-DAY // STEP: -DAY // STEP + 8 * 3600 // STEP] += 25.0  # +8 sigma for 8 hours yesterday
    dirty = fit_series(Series(clean.labels, clean.timestamps, values, STEP), FitSettings())
    assert dirty.training["masked"] >= 8 * 3600 // STEP  # 2.4% of the points, all in one run
    assert width(dirty) < 1.15 * width(fit_series(clean, FitSettings()))


def test_a_noisy_series_one_off_incidents_do_not_widen_its_band_but_its_heavy_tail_does() -> None:
    """An hourly crash rate whose noise is as large as its level (a `noisy` curve): two incidents
    days ago, a few hours each at twenty times the level, stay yesterday's; a tail heavy all along
    (a spike on a fifth of the hours) is the series' nature and stays in the band."""
    rng = np.random.default_rng(11)
    t = EPOCH + 3600 * np.arange(14 * 24, dtype=np.int64)
    base = rng.gamma(1.2, 25.0, len(t))
    clean = Series({"job": "crashes"}, t, base, 3600)
    values = base.copy()
    for start in (5 * 24 + 10, 9 * 24 + 3):
        values[start:start + 4] = 600.0 + rng.normal(0, 20, 4)
    dirty = Series(clean.labels, t, values, 3600)
    a, b = fit_series(clean, FitSettings()), fit_series(dirty, FitSettings())
    assert a.classification["curve_type"] == b.classification["curve_type"] == "noisy"
    assert b.training["masked"] >= 8
    assert np.max(b.upper) < 500.0 and np.median(b.upper) < 1.1 * np.median(a.upper)
    heavy = np.where(rng.random(len(t)) < 0.2, base * 8, base)
    fit = fit_series(Series(clean.labels, t, heavy, 3600), FitSettings())
    assert fit.training["masked"] == 0
    assert np.max(fit.upper) >= np.quantile(heavy, 0.99)


def test_an_afternoon_of_errors_on_a_sparse_counter_stays_yesterday_s_incident() -> None:
    """Errors in one scrape of ten, then five hours of a steady stream four times their usual size:
    one episode among hundreds, but its peak at the top of the blips set the band's tail, and its
    hours the trailing mean's limit. A stream every day at the same size is the counter's habit."""
    rng = np.random.default_rng(3)
    t = EPOCH + STEP * np.arange(10 * DAY // STEP, dtype=np.int64)
    errors = np.where(rng.random(len(t)) < 0.1, rng.poisson(3, len(t)) + 1.0, 0.0)
    incident = errors.copy()
    hours = slice(6 * DAY // STEP, 6 * DAY // STEP + 60)
    incident[hours] = 16.0 + rng.poisson(3, 60)
    clean, dirty = (fit_series(Series({"job": "api"}, t, v, STEP), FitSettings()) for v in (errors, incident))
    assert clean.classification["curve_type"] == dirty.classification["curve_type"] == "intermittent"
    assert dirty.training["excursions"] >= 60
    assert np.max(dirty.upper) < 16.0 and np.max(dirty.upper) <= 1.1 * np.max(clean.upper)
    assert dirty.training["sustained"]["upper"] <= 1.1 * clean.training["sustained"]["upper"]
    daily = errors.copy()
    for day in range(10):
        daily[day * DAY // STEP + 100: day * DAY // STEP + 160] = 16.0 + rng.poisson(3, 60)
    habit = fit_series(Series({"job": "api"}, t, daily, STEP), FitSettings())
    assert "excursions" not in habit.training and np.max(habit.upper) >= 16.0
    lasting = errors.copy()
    lasting[-2 * DAY // STEP:] = 16.0 + rng.poisson(3, 2 * DAY // STEP)  # still streaming: a new level
    new_level = fit_series(Series({"job": "api"}, t, lasting, STEP), FitSettings())
    assert "excursions" not in new_level.training and np.median(new_level.yhat) > 10.0
    broken = errors + 5.0
    broken[0:40:2], broken[1:40:2] = -np.inf, np.nan  # an infinity is no floor to measure episodes from
    fit = fit_series(Series({"job": "api"}, t, broken, STEP), FitSettings(curve_type="intermittent"))
    assert fit.training.get("excursions", 0) < 0.1 * len(t) and np.median(fit.yhat) >= 5.0


def test_a_burst_of_blips_is_one_incident_not_a_dozen_blips() -> None:
    """An error ratio with a blip in one scrape of fifty, and yesterday an hour in which most scrapes
    had errors three times their usual size, with clean scrapes between them. Each run of points
    above zero is short, but the burst is one episode (blips under `BLIP_GAP` apart), and a one-off:
    its dozen peaks must not set the tail the band's upper edge is extrapolated by. A burst every
    day is the series' habit and stays inside."""
    rng = np.random.default_rng(11)
    t = EPOCH + STEP * np.arange(12 * DAY // STEP, dtype=np.int64)
    blips = np.where(rng.random(len(t)) < 0.02, rng.uniform(0.001, 0.004, len(t)), 0.0)

    def burst(values: np.ndarray, start: int) -> None:
        hour = np.arange(start, start + 12)
        values[hour] = np.where(np.arange(12) % 4 == 3, 0.0, rng.uniform(0.009, 0.014, 12))

    once = blips.copy()
    burst(once, 11 * DAY // STEP - 100)
    clean, dirty = (fit_series(Series({"job": "api"}, t, v, STEP), FitSettings()) for v in (blips, once))
    assert clean.classification["curve_type"] == dirty.classification["curve_type"] == "intermittent"
    assert dirty.training["excursions"] >= 9
    assert np.max(dirty.upper) < 0.009 and np.max(dirty.upper) <= 1.1 * np.max(clean.upper)
    daily = blips.copy()
    for day in range(12):
        burst(daily, day * DAY // STEP + 100)
    habit = fit_series(Series({"job": "api"}, t, daily, STEP), FitSettings())
    assert "excursions" not in habit.training and np.max(habit.upper) >= 0.014


@pytest.mark.parametrize("quiet", [0, 1, 5])
def test_a_burst_of_blips_still_under_way_is_not_masked(quiet: int) -> None:
    """A burst in the last hour may be the series' new normal: kept whether its last blip is the last
    scrape or came a few scrapes before it (it used to flip between retrains on that)."""
    from smartmetrics.engine.training import one_off_episodes

    t = EPOCH + STEP * np.arange(7 * DAY // STEP, dtype=np.int64)
    above = np.zeros(len(t), dtype=bool)
    above[::36] = True  # a blip every three hours
    end = len(t) - quiet
    above[end - 13:end:2] = True  # seven blips in the hour up to `quiet` scrapes before the end
    above[end:] = False
    assert not one_off_episodes(above, t, STEP)[-20:].any()
    earlier = np.roll(above, -3 * DAY // STEP)  # the same burst three days before the end: an incident
    assert one_off_episodes(earlier, t, STEP).sum() >= 7


def test_a_gauge_at_zero_with_a_blip_on_most_days_keeps_its_blips_inside_the_band() -> None:
    """Seven blips in two weeks, each on a day of its own: too few to call the series intermittent, a
    constant gauge at zero, yet the blips recur and the next one is no incident."""
    rng = np.random.default_rng(5)
    t = EPOCH + STEP * np.arange(14 * DAY // STEP, dtype=np.int64)
    values = np.zeros(len(t))
    sizes = rng.uniform(0.001, 0.003, 7)
    for day, size in zip((0, 2, 4, 6, 8, 10, 12), sizes, strict=True):
        values[day * DAY // STEP + int(rng.integers(10, 250))] = size
    fit = fit_series(Series({"job": "ratio"}, t, values, STEP), FitSettings())
    assert fit.classification["curve_type"] == "constant"
    assert np.min(fit.upper) >= np.median(sizes)


@pytest.mark.parametrize(("days", "blips", "inside"), [(6, (0, 2, 3, 5), True), (6, (0, 5), False),
                                                     (14, (0, 4, 8, 12), False)])
def test_a_young_gauge_s_blips_are_a_habit_at_the_rate_of_six_in_two_weeks(days: int, blips: tuple,
                                                                           inside: bool) -> None:
    """An error ratio at zero that blipped on four of its first six days will blip again: its band
    reaches them (it waited for a sixth blip, and each one alerted). Two blips in six days, or four in
    two weeks, stay one-offs outside the band."""
    rng = np.random.default_rng(7)
    t = EPOCH + STEP * np.arange(days * DAY // STEP, dtype=np.int64)
    values = np.zeros(len(t))
    sizes = rng.uniform(0.001, 0.003, len(blips))
    for day, size in zip(blips, sizes, strict=True):
        values[day * DAY // STEP + int(rng.integers(10, 250))] = size
    fit = fit_series(Series({"job": "ratio"}, t, values, STEP), FitSettings())
    assert fit.classification["curve_type"] == "constant"
    assert (np.min(fit.upper) >= np.median(sizes)) == inside


@pytest.mark.parametrize("step", [300, 3600])
def test_blips_hours_apart_are_separate_episodes_at_any_step(step: int) -> None:
    """Two blips three hours apart on five days are ten episodes, a habit, at a 5-minute step and
    at an hourly one alike: only blips less than an hour apart are one."""
    t = EPOCH + step * np.arange(14 * DAY // step, dtype=np.int64)
    values = np.zeros(len(t))
    for day in (1, 4, 6, 9, 12):
        at = (day * DAY + 10 * 3600) // step
        values[at], values[at + 3 * 3600 // step] = 0.002, 0.0025
    assert _recurring_blips(np.zeros(3), Series({}, t, values, step), 0.999)[0] == 0.0025


def test_bursts_of_blips_on_a_few_days_stay_incidents_on_a_constant_gauge() -> None:
    """Five incidents, each a burst of blips minutes apart, on five days of fourteen: ten runs above
    the gauge's value, but five episodes, too few to be its habit."""
    t = EPOCH + STEP * np.arange(14 * DAY // STEP, dtype=np.int64)
    values = np.full(len(t), 0.5)
    for day in (1, 4, 6, 9, 11):
        start = day * DAY // STEP + 100
        values[start] = values[start + 3] = 0.9
    fit = fit_series(Series({"job": "gauge"}, t, values, STEP), FitSettings())
    assert fit.classification["curve_type"] == "constant"
    assert np.max(fit.upper) < 0.7


def test_an_afternoon_away_from_a_constant_gauges_value_does_not_widen_its_band() -> None:
    t = EPOCH + STEP * np.arange(6 * DAY // STEP, dtype=np.int64)
    values = np.full(len(t), 8.0)
    away = (t >= EPOCH + 3 * DAY + 12 * 3600) & (t < EPOCH + 3 * DAY + 18 * 3600)
    values[away] = 9.9  # six hours at another replica count, then back
    fit = fit_series(Series({"job": "gauge"}, t, values, STEP), FitSettings())
    assert fit.classification["curve_type"] == "constant"
    assert fit.training["excursions"] == int(away.sum())
    assert np.all(fit.upper < 9.0) and np.all(fit.lower > 7.0)  # 11 tomorrow is an alert, 9.9 too
    values[away] = 8.0
    values[-24:] = 9.9  # a value held at the end may be the new one: kept for the fit
    assert "excursions" not in fit_series(Series({"job": "gauge"}, t, values, STEP), FitSettings()).training

def test_history_before_a_level_shift_is_cut() -> None:
    s = make(kind="stable", noise=1.0)
    values = s.values.copy()
    values[-4 * DAY // STEP:] += 30.0
    fit = fit_series(Series(s.labels, s.timestamps, values, STEP), FitSettings())
    assert fit.training["level_shift"] is not None
    assert np.median(fit.yhat) == pytest.approx(80.0, abs=1.0)
    assert np.median(fit.upper - fit.yhat) < 15.0  # half the shift: the band is the new level's
    # until a week has passed, the band also reaches the level this hour had a week ago
    assert np.median(fit.lower) < 52.0


def test_a_week_after_a_level_shift_the_old_level_is_outside_the_band() -> None:
    s = make(kind="stable", noise=1.0)
    values = s.values.copy()
    values[-8 * DAY // STEP:] += 30.0
    fit = fit_series(Series(s.labels, s.timestamps, values, STEP), FitSettings())
    assert np.median(fit.yhat) == pytest.approx(80.0, abs=1.0)
    assert width(fit) < 15.0  # the old level is not inside the band


def test_a_growing_series_band_does_not_reach_back_to_last_weeks_level() -> None:
    t = EPOCH + STEP * np.arange(9 * DAY // STEP, dtype=np.int64)
    growth = 100 + 10 * (t - t[0]) / DAY  # disk usage: +10 a day, +70 a week
    y = growth + np.random.default_rng(4).normal(0, 1.0, len(t))
    fit = fit_series(Series({"job": "disk"}, t, y, STEP), FitSettings())
    assert fit.classification["curve_type"] == "trending"
    assert np.median(fit.yhat - fit.lower) < 25.0  # not the 70 back to where it was a week ago


def test_a_bursty_queue_band_covers_its_busy_level_all_day() -> None:
    rng = np.random.default_rng(1)
    t = EPOCH + STEP * np.arange(3 * DAY // STEP, dtype=np.int64)
    busy, state, i = np.zeros(len(t), bool), True, 0
    while i < len(t):  # a batch GPU queue: busy and idle runs of 10 minutes to 4 hours
        run = int(np.exp(rng.uniform(np.log(2), np.log(48))))
        busy[i:i + run], state, i = state, not state, i + run
    y = np.clip(np.where(busy, 90.0, 10.0) + rng.normal(0, 4, len(t)), 0, None)
    fit = fit_series(Series({"gpu": "0"}, t, y, STEP), FitSettings())
    assert fit.classification["curve_type"] == "regime"
    assert [round(r["centre"] / 10) for r in fit.classification["regimes"]] == [1, 9]
    assert fit.upper.min() >= 90.0  # a busy run at any hour tomorrow is normal (a profile said 51)
    assert fit.upper.max() < 200.0  # a load far beyond any regime still alerts


def test_held_out_coverage_shows_a_band_that_does_not_hold() -> None:
    rng = np.random.default_rng(6)
    t = EPOCH + STEP * np.arange(10 * DAY // STEP, dtype=np.int64)
    calm = 100 + rng.normal(0, 1, len(t))
    fit = fit_series(Series({"a": "calm"}, t, calm, STEP), FitSettings())
    assert fit.coverage["held_out"] >= 0.99 and fit.coverage["held_out_n"] == DAY // STEP
    wild = calm.copy()
    wild[-DAY // STEP:] = 100 + rng.normal(0, 4, DAY // STEP)  # the last day is four times as noisy
    fit = fit_series(Series({"a": "wild"}, t, wild, STEP), FitSettings())
    assert fit.coverage["held_out"] < 0.95 and fit.coverage["achieved"] > 0.99  # in-sample hides it


def test_rare_batch_jobs_at_random_times_are_a_regime_not_an_incident() -> None:
    rng = np.random.default_rng(4)
    step = 60
    t = EPOCH + step * np.arange(10 * DAY // step, dtype=np.int64)
    y = 0.05 + rng.normal(0, 0.01, len(t))
    for start in rng.integers(0, len(t) - 60, 12):  # a 20-50 minute job about daily, at any hour
        y[start:start + int(rng.integers(20, 50))] = 0.93 + rng.normal(0, 0.02)
    fit = fit_series(Series({"gpu": "1"}, t, np.clip(y, 0, 1), step, name="gpu_utilization"),
                     FitSettings())
    assert fit.classification["curve_type"] == "regime"
    assert fit.training["sustained"] is not None  # a job running far longer than any before alerts
    assert fit.upper.min() >= 0.93 and fit.upper.max() <= 1.0  # the jobs' load, inside the natural range


def test_a_regime_curve_s_yhat_never_sits_on_an_edge_of_its_band() -> None:
    """A queue that drains to a few items and fills to eighty: where its models' yhat fell below the
    lowest regime's tail, yhat sat on the lower edge, and a value a hair below it scored 2e8."""
    queue = make_series("regime", step=300, days=14, seed=1_000_003 + 267, noise="high", anomalies=False)
    train = Series(queue.series.labels, queue.series.timestamps[:1728], queue.series.values[:1728], 300)
    fit = fit_series(train, FitSettings())
    assert fit.classification["curve_type"] == "regime"
    wide = fit.upper > fit.lower
    assert np.all((fit.yhat[wide] > fit.lower[wide]) & (fit.yhat[wide] < fit.upper[wide]))
    assert anomaly_score(fit.lower[0] - 0.2, fit.yhat[0], fit.lower[0], fit.upper[0]) < 1.3


def test_a_configured_regime_curve_gets_the_same_yhat_cold_and_kept() -> None:
    """A configured `regime` curve has no regimes in its classification: the band and yhat's move off
    the band's edge both read the regimes found now, so the next day's kept fit agrees."""
    rng = np.random.default_rng(0)
    t = EPOCH + STEP * np.arange(14 * DAY // STEP, dtype=np.int64)
    q = np.tile(np.r_[np.full(72, 10.0), np.full(72, 80.0)], len(t) // 144 + 1)[:len(t)] + rng.normal(0, 0.5, len(t))
    q[-293:] = np.linspace(80, 300, 293)
    series = Series({"job": "q"}, t, q, STEP)
    cold = fit_series(series, FitSettings(curve_type="regime"))
    kept = fit_series(series, FitSettings(curve_type="regime"), previous=json.loads(json.dumps(cold.classification)))
    assert cold.yhat[0] == pytest.approx(kept.yhat[0]) == pytest.approx(80.0, abs=1.0)


@pytest.mark.parametrize(("hours", "inside"), [(20, False), (30, True)])
def test_a_regime_curve_learns_a_level_it_has_held_for_a_day(hours: int, inside: bool) -> None:
    """A GPU idling at 30% with jobs near full load, then drained to 2%: a level no regime has alerts,
    until the series has stayed there a whole day, and then it is where the series lives now."""
    rng = np.random.default_rng(4)
    step = 60
    t = EPOCH + step * np.arange(10 * DAY // step, dtype=np.int64)
    y = 0.3 + rng.normal(0, 0.01, len(t))
    for start in rng.integers(0, len(t) - 60 - 2000, 12):
        y[start:start + int(rng.integers(20, 50))] = 0.93 + rng.normal(0, 0.02)
    y[-hours * 60:] = 0.02 + rng.normal(0, 0.005, hours * 60)
    fit = fit_series(Series({"gpu": "1"}, t, np.clip(y, 0, 1), step, name="gpu_utilization"), FitSettings())
    assert fit.classification["curve_type"] == "regime"
    assert bool(fit.lower.min() <= 0.02) is inside
    assert fit.upper.max() >= 0.93


def test_spikes_that_recur_every_hour_on_a_quantised_level_are_normal() -> None:
    rng = np.random.default_rng(8)
    t = EPOCH + STEP * np.arange(10 * DAY // STEP, dtype=np.int64)
    level, i = np.empty(len(t)), 0
    while i < len(t):  # a quantised gauge flipping between 0.49 and 0.50 for hours at a time
        run = int(rng.integers(12, 120))
        level[i:i + run], i = rng.choice([0.49, 0.5]), i + run
    spikes = rng.random(len(t)) < 0.03  # about nine spikes a day, up to the maximum
    y = np.where(spikes, np.round(rng.uniform(0.55, 1.0, len(t)), 2), level)
    fit = fit_series(Series({"dim": "4"}, t, y, STEP), FitSettings())
    threshold = band_policy("medium").threshold
    assert np.all(rule_score(np.full(len(fit.yhat), 1.0), fit.yhat, fit.lower, fit.upper) <= threshold)
    assert np.all(fit.lower <= 0.49)


def test_a_constant_gauge_with_spikes_every_day_keeps_them_inside_the_band() -> None:
    rng = np.random.default_rng(9)
    t = EPOCH + STEP * np.arange(10 * DAY // STEP, dtype=np.int64)
    y = np.full(len(t), 0.5)
    for at in rng.choice(len(t) - 2, 40, replace=False):  # four short spikes a day, to 0.6-1.0
        y[at:at + int(rng.integers(1, 3))] = np.round(rng.uniform(0.6, 1.0), 2)
    fit = fit_series(Series({"dim": "4"}, t, y, STEP), FitSettings())
    assert fit.classification["curve_type"] == "constant" and "excursions" not in fit.training
    threshold = band_policy("medium").threshold
    assert np.all(rule_score(np.full(len(fit.yhat), 0.9), fit.yhat, fit.lower, fit.upper) <= threshold)
    once = np.full(len(t), 0.5)
    once[1000:1040] = 0.9  # one afternoon at another value: an incident, kept out
    fit = fit_series(Series({"dim": "4"}, t, once, STEP), FitSettings())
    assert fit.training["excursions"] == 40 and np.all(fit.upper < 0.9)


def test_a_handful_of_scrapes_gets_no_band_and_says_why() -> None:
    t = EPOCH + STEP * np.arange(3 * DAY // STEP, dtype=np.int64)
    y = np.full(len(t), np.nan)
    y[::30] = 5.0 + np.arange(len(y[::30])) % 3  # 29 scrapes in three days
    fit = fit_series(Series({"job": "rare"}, t, y, STEP), FitSettings())
    assert fit.classification["curve_type"] == "insufficient"
    assert np.isnan(fit.yhat).all() and np.isnan(fit.lower).all() and np.isnan(fit.upper).all()
    assert "29 points" in fit.training["withheld"]
    y[::5] = 5.0  # 174 of them: a band, wide as a young one is
    assert np.isfinite(fit_series(Series({"job": "rare"}, t, y, STEP), FitSettings()).upper).all()


def test_a_first_day_s_batch_jobs_are_inside_its_band() -> None:
    """Less than a day of a GPU's power: idle, and two jobs at forty times the idle draw. Too little
    history to call them incidents (cleaning masks them as such): the band covers everything seen."""
    rng = np.random.default_rng(2)
    t = EPOCH + STEP * np.arange(20 * 3600 // STEP, dtype=np.int64)
    y = 25_000 + rng.normal(0, 5_000, len(t))
    for start in (30, 150):
        y[start:start + 12] = 970_000 + rng.normal(0, 10_000, 12)
    fit = fit_series(Series({"gpu": "0"}, t, y, STEP), FitSettings())
    assert fit.classification["curve_type"] == "insufficient"
    assert np.min(fit.upper) >= np.max(y)


def test_small_error_blips_stay_inside_the_band() -> None:
    rng = np.random.default_rng(5)
    step = 60
    t = EPOCH + step * np.arange(7 * DAY // step, dtype=np.int64)
    y = np.where(rng.random(len(t)) < 0.003, rng.uniform(0.001, 0.01, len(t)), 0.0)  # an error ratio
    fit = fit_series(Series({"svc": "a"}, t, y, step, name="errors_ratio"), FitSettings())
    assert fit.classification["curve_type"] == "intermittent"
    assert np.all(fit.lower == 0.0)
    threshold = band_policy("medium").threshold
    assert np.all(rule_score(np.full(1440, 0.01), fit.yhat, fit.lower, fit.upper) <= threshold)  # the largest blip
    assert np.all(rule_score(np.full(1440, 0.03), fit.yhat, fit.lower, fit.upper) > threshold)  # 3x it alerts


def test_intermittent_series_keeps_zero_as_its_lower_band() -> None:
    fit = fit_series(make(kind="sparse"), FitSettings())
    assert fit.classification["curve_type"] == "intermittent"
    assert np.all(fit.lower == 0.0) and np.all(fit.upper >= 4.0)


def test_higher_sensitivity_gives_a_narrower_band() -> None:
    s = make(days=7, kind="stable")
    assert width(fit_series(s, FitSettings(sensitivity="high"))) < width(fit_series(s, FitSettings(sensitivity="low")))


def test_curve_type_override_and_tiny_inputs() -> None:
    s = make(days=2, kind="stable")
    assert fit_series(s, FitSettings(curve_type="constant")).classification["curve_type"] == "constant"
    tiny = Series({}, s.timestamps[:3], np.array([1.0, np.nan, 1.0]), STEP)
    fit = fit_series(tiny, FitSettings(horizon=3600))  # two points: a table, its band withheld
    assert len(fit.timestamps) == 12 and np.isnan(fit.upper).all() and fit.training["withheld"]
    short = Series({}, s.timestamps[:60], s.values[:60], STEP)  # five hours: a wide young band
    fit = fit_series(short, FitSettings(horizon=3600))
    assert np.all(fit.lower <= np.nanmin(short.values)) and np.all(fit.upper >= np.nanmax(short.values))


@pytest.mark.parametrize("kind", ["seasonal", "intermittent"])
def test_values_too_large_to_square_get_an_error_that_says_what_to_do(kind: str) -> None:
    """Near the float64 limit a fit's variances overflow: an intermittent series failed with an
    AttributeError from inside the ensemble, a seasonal one was classified stable. Now both get a
    ValueError that names the size and the remedy (a batch reports it as the series' failure)."""
    from smartmetrics.engine.batch import FitFailure, fit_batch

    s = make(days=4, kind=kind)
    huge = Series(s.labels, s.timestamps, s.values * 1e200, STEP)
    with pytest.raises(ValueError, match=r"values up to .*e\+20\d.*divide the series in its query"):
        fit_series(huge, FitSettings())
    large = Series(s.labels, s.timestamps, s.values * 1e140, STEP)  # still fine: squares stay finite
    fit = fit_series(large, FitSettings())
    assert fit.classification["curve_type"] == kind and np.isfinite(fit.upper).all()
    failed, fitted = fit_batch([huge, s], FitSettings(), [(), ()])
    assert isinstance(failed, FitFailure) and "divide the series" in failed.message
    assert isinstance(fitted, FittedSeries)


def test_a_series_younger_than_min_history_is_learning_and_says_until_when() -> None:
    """A series that appeared 20 hours ago (its grid reaches back further, as a range query's does):
    no band yet and no stuck or sustained alert, a reason, and the time its band is due; with a day
    of history it has its band."""
    s = make(days=3)
    young = s.values.copy()
    young[: -20 * 3600 // STEP] = np.nan
    fit = fit_series(Series(s.labels, s.timestamps, young, STEP), FitSettings(min_history=DAY))
    first = int(s.timestamps[-20 * 3600 // STEP])
    assert fit.training["history"] == 20 * 3600
    assert np.isnan(fit.upper).all() and np.isnan(fit.yhat).all()
    assert fit.training["withheld"].startswith("learning: 20h of history, a band from 1d on")
    assert fit.training["learning_until"] == first + DAY
    assert fit.stuck_after == 0 and fit.sustained is None
    unguarded = fit_series(Series(s.labels, s.timestamps, young, STEP), FitSettings())  # min_history 0
    assert np.isfinite(unguarded.upper).all() and unguarded.stuck_after > 0
    old = fit_series(s, FitSettings(min_history=DAY))
    assert "withheld" not in old.training and np.isfinite(old.upper).all() and old.training["history"] == 3 * DAY


def replay_onsets(series: Series, start_day: int) -> tuple[int, object]:
    """Alert onsets of a daily walk-forward replay from `start_day`, with the medium policy's alerting."""
    from smartmetrics.engine.firing import AlertRules
    from smartmetrics.evaluation.backtest import backtest_series

    frame = backtest_series(
        series, lambda train, horizon: fit_series(train, FitSettings(horizon=horizon)),
        AlertRules.of_sensitivity("medium"), retrain_every=DAY, history=14 * DAY, min_history=start_day * DAY,
    )
    return int(frame["alert"].sum()), frame


def weekly_traffic(days: int, seed: int = 0) -> Series:
    """The demo's tenant traffic: a daytime peak, weekends at 60% of weekdays, a little noise."""
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(days * DAY // STEP, dtype=np.int64)  # EPOCH is a Monday
    hour = (t % DAY) / 3600
    shape = 0.25 + 0.75 * np.exp(-0.5 * ((hour - 14) / 4.0) ** 2)
    weekend = ((t // DAY) + 3) % 7 >= 5
    y = 1000 * shape * np.where(weekend, 0.6, 1.0) * (1 + rng.normal(0, 0.02, len(t)))
    return Series({"job": "traffic"}, t, y, STEP)


def test_weekly_pattern_from_one_to_two_weeks_raises_no_weekend_alerts() -> None:
    onsets, frame = replay_onsets(weekly_traffic(21, seed=3), start_day=8)
    assert onsets == 0, frame.loc[frame["alert"] == 1, "timestamp"].tolist()
    ts = frame["timestamp"].to_numpy()
    saturday = (ts >= EPOCH + 19 * DAY) & (ts < EPOCH + 20 * DAY)
    assert frame.loc[saturday, "yhat"].max() < 0.75 * frame.loc[~saturday & (ts >= EPOCH + 14 * DAY), "yhat"].max()


def test_a_first_weekend_may_fall_below_anything_a_quiet_history_shows() -> None:
    t = EPOCH + STEP * np.arange(5 * DAY // STEP, dtype=np.int64)  # Monday to Friday
    y = 140 + np.random.default_rng(5).normal(0, 2.0, len(t))  # a narrow history: its span is ~10
    fit = fit_series(Series({"job": "flat"}, t, y, STEP), FitSettings())  # predicts the Saturday
    assert np.median(fit.lower) <= 0.5 * np.median(fit.yhat) + 1.0  # the weekend prior, not the span cap


def test_the_monday_after_a_first_quiet_weekend_may_return_to_fridays_level() -> None:
    def traffic(days: int) -> Series:  # from a Wednesday: three weekdays, a weekend at 60%, noisy
        t = EPOCH + 2 * DAY + STEP * np.arange(days * DAY // STEP, dtype=np.int64)
        weekend = ((t // DAY) + 3) % 7 >= 5
        y = 1000 * (1 + 0.6 * np.cos(2 * np.pi * ((t % DAY) / 3600 - 14) / 24)) * np.where(weekend, 0.6, 1.0)
        return Series({"job": "traffic"}, t, y + np.random.default_rng(2).normal(0, 120, len(t)), STEP)

    fit = fit_series(traffic(5), FitSettings())  # no weekly period yet: predicts the Monday
    monday = traffic(6).values[-len(fit.timestamps):]
    score = anomaly_score(monday, fit.yhat, fit.lower, fit.upper)
    assert score.max() < band_policy("medium").threshold, "a Monday back at the weekday level alerted"


def test_a_nightly_job_is_learned_and_a_spike_at_another_hour_still_alerts() -> None:
    series = make(days=6, seed=7, kind="stable", noise=1.0)
    jitter = np.random.default_rng(7).integers(-4, 5, 7) * STEP  # the job starts 03:00 +- 20 minutes
    values = series.values.copy()
    for day in range(6):
        values[series.timestamps == EPOCH + day * DAY + 3 * 3600 + jitter[day]] += 30.0
    fit = fit_series(Series(series.labels, series.timestamps, values, STEP), FitSettings())
    at = (fit.timestamps - EPOCH - 6 * DAY) // STEP  # the next day, by step
    tonight = 50.0 + np.where(at == 3 * 3600 // STEP + jitter[6] // STEP, 30.0, 0.0)
    assert anomaly_score(tonight, fit.yhat, fit.lower, fit.upper).max() <= 1.0  # the job, as every night
    noon = np.where(at == 12 * 3600 // STEP, 80.0, 50.0)
    assert anomaly_score(noon, fit.yhat, fit.lower, fit.upper).max() > 2.0  # the same spike at noon


def test_a_trend_is_no_recurring_excursion() -> None:
    """Every earlier day of a growing series lies below the coming day's band at every hour: that
    is the trend, not a nightly drop, and a dip must still alert."""
    series = make(days=7, seed=8, kind="stable", noise=1.0)
    rising = Series(series.labels, series.timestamps, series.values + 10 * (series.timestamps - EPOCH) / DAY, STEP)
    fit = fit_series(rising, FitSettings())
    assert np.median(fit.yhat - fit.lower) < 20.0  # about a day of growth; a blind band would reach 70


def test_a_deploy_level_shift_raises_at_most_one_alert() -> None:
    series = make(days=14, seed=4, kind="stable", noise=1.0)
    values = series.values.copy()
    values[series.timestamps >= EPOCH + 9 * DAY + 13 * 3600] += 15.0
    onsets, frame = replay_onsets(Series(series.labels, series.timestamps, values, STEP), start_day=7)
    assert onsets <= 1
    next_day = frame["timestamp"] >= EPOCH + 10 * DAY + 2 * 3600  # after keep_firing_for, the day is normal
    assert frame.loc[next_day, "firing"].sum() == 0


def test_band_stays_sane_on_plateaus_of_a_histogram_quantile() -> None:
    """histogram_quantile sits on bucket edges for hours, then jumps: the band must not explode.

    The data is 14 days of the demo's p99 latency (smartmetrics.app.demo_data), where the upper band
    once reached 190 for values under 2.4 (slot scales near zero, normalised residuals in the 1000s).
    """
    from pathlib import Path

    from smartmetrics.adapters.files import read_csv_series
    from smartmetrics.engine.ensemble import SPAN_CAP, FitSettings, fit_series

    series = read_csv_series(Path(__file__).parents[1] / "data" / "p99_latency_plateaus.csv", step=300)
    fitted = fit_series(series, FitSettings())
    values = series.values[np.isfinite(series.values)]
    span = np.quantile(values, 0.995) - np.quantile(values, 0.005)
    assert np.nanmax(fitted.upper - fitted.yhat) <= SPAN_CAP * span + 1e-9
    assert np.nanmax(fitted.upper) < 3 * values.max()


# --- a daily retrain keeps the curve type of the series' last fit (`kept_classification`) ---


def later(series: Series, days: float) -> Series:
    """The same history, `days` later: the window a daily retrain sees (the oldest points dropped)."""
    return Series(series.labels, series.timestamps + int(days * DAY), series.values.copy(), series.step)


def stored(classification: dict) -> dict:
    """A classification as the store gives it back (JSON, NaN as null)."""
    from smartmetrics.engine.state import json_safe

    return json.loads(json.dumps(json_safe(classification)))


def same_week(series: Series, days: float) -> bool:
    from smartmetrics.engine.ensemble import reclassify_week

    return reclassify_week(series.end, series.key) == reclassify_week(series.end + days * DAY, series.key)


def test_a_warm_fit_keeps_the_last_classification_and_gives_the_cold_fit_s_band() -> None:
    s = make(seed=3)
    cold = fit_series(s, FitSettings())
    stamp = cold.classification["classified"]
    assert stamp["at"] == s.end and stamp["span"] == s.end - s.start + STEP
    warm = fit_series(s, FitSettings(), previous=stored(cold.classification))
    assert warm.training["classification"] == "kept" and "classification" not in cold.training
    assert warm.classification == cold.classification
    for a, b in ((warm.yhat, cold.yhat), (warm.lower, cold.lower), (warm.upper, cold.upper)):
        np.testing.assert_array_equal(a, b)


def test_a_kept_classification_is_used_as_it_was_not_recomputed() -> None:
    s = make(seed=4)
    days = next(d for d in (1, 2, 3) if same_week(s, d))
    told = dict(fit_series(s, FitSettings()).classification, curve_type="stable", periods=[])  # not what it is
    warm = fit_series(later(s, days), FitSettings(), previous=told)
    assert warm.classification["curve_type"] == "stable"
    stamp = dict(warm.classification["classified"])
    # still the first one's: its week counts on; a stable curve's candidates are backtested afresh and kept
    assert stamp.pop("ensemble")["names"] == ["level", "profile_day"] and "ensemble" not in warm.training
    assert stamp == {k: v for k, v in told["classified"].items() if k != "ensemble"}
    assert fit_series(later(s, days), FitSettings()).classification["curve_type"] == "seasonal"


def test_each_series_is_classified_afresh_once_a_week_on_a_day_of_its_own() -> None:
    from smartmetrics.engine.ensemble import kept_classification, reclassify_week

    base = make(seed=5)
    fresh_days = []
    for i in range(40):
        s = Series({"job": "seasonal", "i": str(i)}, base.timestamps, base.values, STEP)
        first = stored(fit_series(s, FitSettings()).classification)
        kept = [kept_classification(first, later(s, d)) is not None for d in range(8)]
        assert kept[0] and not kept[7]  # never a week old
        assert kept == [reclassify_week(s.end, s.key) == reclassify_week(s.end + d * DAY, s.key) for d in range(8)]
        fresh_days.append(kept.index(False))
    assert len(set(fresh_days)) >= 5  # spread over the week, not one day for all


def test_a_daily_refit_keeps_the_week_s_backtest_and_refits_its_members_on_today_s_history(monkeypatch) -> None:
    from smartmetrics.engine import ensemble

    s = make(seed=6)
    days = next(d for d in (1, 2, 3) if same_week(s, d))
    first = fit_series(s, FitSettings())
    record = first.classification["classified"]["ensemble"]
    assert record["names"] == ["profile_day"] and record["q_hi"] == first.coverage["q_hi"]
    today = Series(s.labels, s.timestamps + days * DAY, s.values * 1.5, STEP)  # same curve, half as busy again

    def no_backtest(*args, **kwargs):
        raise AssertionError("a kept ensemble backtested its candidates")

    monkeypatch.setattr(ensemble, "select_members", no_backtest)
    warm = fit_series(today, FitSettings(), previous=stored(first.classification))
    monkeypatch.undo()
    assert warm.training["ensemble"] == "kept" and warm.training["classification"] == "kept"
    assert {k: warm.coverage[k] for k in ("q_lo", "q_hi", "held_out")} == \
        {k: first.coverage[k] for k in ("q_lo", "q_hi", "held_out")}
    # the members are refitted: today's band follows today's level and noise, at the week's quantiles
    assert np.median(warm.yhat) == pytest.approx(1.5 * np.median(first.yhat), rel=0.05)
    assert np.median(warm.upper - warm.yhat) == pytest.approx(1.5 * np.median(first.upper - first.yhat), rel=0.1)
    cold = fit_series(today, FitSettings())  # a backtest of today: the same choice, its own quantiles
    assert [m["name"] for m in cold.members] == [m["name"] for m in warm.members]
    assert cold.coverage["q_hi"] == pytest.approx(warm.coverage["q_hi"], rel=0.25)


@pytest.mark.parametrize("why", ["no record", "other candidates", "another sensitivity", "malformed",
                                 "members without names", "an overflowing count", "a boolean weight",
                                 "members not the weighted ones", "a noisier day"])
def test_a_kept_classification_backtests_again_when(why: str) -> None:
    s = make(seed=6)
    days = next(d for d in (1, 2, 3) if same_week(s, d))
    told = stored(fit_series(s, FitSettings()).classification)
    record, settings, series = told["classified"]["ensemble"], FitSettings(), later(s, days)
    if why == "no record":  # a store written before the ensemble was kept
        del told["classified"]["ensemble"]
    elif why == "other candidates":  # e.g. the models setting changed
        settings = FitSettings(models=("level", "profile_day"))
    elif why == "another sensitivity":
        settings = FitSettings(sensitivity="high")
    elif why == "malformed":
        record["q_hi"] = "wide"
    elif why == "members without names":  # a hand-edited store must not fail the fit every day
        record["members"] = [{"loss": 0.2}]
    elif why == "an overflowing count":
        record["n"] = 1e999  # JSON's Infinity
    elif why == "a boolean weight":
        record["weights"] = {name: True for name in record["weights"]}
    elif why == "members not the weighted ones":  # the summary would name a model that is not there
        record["members"] = [dict(m, name="zzz") for m in record["members"]]
    else:  # the newest day three times as noisy (noise 3, plus 6 more)
        last = series.timestamps > series.end - DAY
        values = series.values.copy()
        values[last] += np.random.default_rng(1).normal(0, 6.0, int(last.sum()))
        series = Series(s.labels, series.timestamps, values, STEP)
    warm = fit_series(series, settings, previous=told)
    assert warm.training["classification"] == "kept" and "ensemble" not in warm.training
    assert warm.classification["classified"]["ensemble"]["names"] == [m["name"] for m in warm.members]


def test_a_member_that_cannot_forecast_the_past_is_kept_in_a_cold_fit_and_leaves_no_record(monkeypatch) -> None:
    from smartmetrics.engine import ensemble

    s = make(seed=6)
    before = fit_series(s, FitSettings())
    real = ensemble._fit_model

    def no_past(name, series):
        model = real(name, series)
        predict = model.predict

        def only_ahead(ts):
            if np.min(ts) <= s.end and len(series) == len(s):  # the refit on the whole history
                raise ValueError("cannot forecast the past")
            return predict(ts)
        model.predict = only_ahead
        return model

    monkeypatch.setattr(ensemble, "_fit_model", no_past)
    cold = fit_series(s, FitSettings())
    assert [m["name"] for m in cold.members] == [m["name"] for m in before.members]
    np.testing.assert_array_equal(cold.upper, before.upper)
    assert "ensemble" not in cold.classification["classified"]  # nothing to judge tomorrow by: backtested


def test_the_days_since_a_level_shift_are_backtested_again_as_they_grow() -> None:
    s = make(seed=0, kind="stable")
    step_up = np.where(s.timestamps > s.end - 7.5 * DAY, 40.0, 0.0)
    shifted = Series(s.labels, s.timestamps, s.values + step_up, STEP)
    days = next(d for d in (1, 2, 3) if same_week(shifted, d))
    first = fit_series(shifted, FitSettings())
    assert first.classification["curve_type"] in ("level_shift", "stable")
    nxt = Series(s.labels, shifted.timestamps + days * DAY,
                 np.r_[shifted.values[days * 288:], shifted.values[-days * 288:]], STEP)
    warm = fit_series(nxt, FitSettings(), previous=stored(first.classification))
    # the backtest of the first covered the days since the shift (four folds either way): a day or more
    # later there are more than 10% more of them
    assert warm.training["classification"] == "kept" and "ensemble" not in warm.training, warm.training
    grown = warm.classification["classified"]["ensemble"]["history"]
    assert grown > 1.1 * first.classification["classified"]["ensemble"]["history"]


@pytest.mark.parametrize("why", ["next week", "the history grew", "a young series in a full window",
                                 "the level moved", "a flat gauge began to move", "no data on the last day",
                                 "insufficient", "another configured type", "no stamp", "another version",
                                 "periods malformed", "a malformed regime"])
def test_a_classification_is_made_afresh_when(why: str) -> None:
    s = make(seed=5)
    days = next(d for d in (1, 2, 3) if same_week(s, d))
    series, settings = later(s, days), FitSettings()
    told = dict(fit_series(s, FitSettings()).classification, curve_type="stable", periods=[])
    stamp = told["classified"] = dict(told["classified"])
    if why == "next week":
        series = later(s, next(d for d in range(1, 8) if not same_week(s, d)))
    elif why == "the history grew":
        half = Series(s.labels, s.timestamps[len(s) // 2:], s.values[len(s) // 2:], s.step)
        told = dict(fit_series(half, FitSettings()).classification, curve_type="stable", periods=[])
        series = s  # twice as long now
    elif why == "a young series in a full window":  # as a fetch gives it: NaN before it began
        young = Series(s.labels, s.timestamps, np.where(s.timestamps < s.end - 5 * DAY, np.nan, s.values), STEP)
        told = dict(fit_series(young, FitSettings()).classification, curve_type="stable", periods=[])
        series = Series(s.labels, young.timestamps + DAY, np.r_[young.values[288:], s.values[-288:]], STEP)
    elif why == "the level moved":
        series = Series(s.labels, series.timestamps, series.values + 200.0, s.step)  # 200 against an IQR of ~57
    elif why == "a flat gauge began to move":
        stamp["flat"] = 0.5
    elif why == "no data on the last day":
        series = Series(s.labels, series.timestamps, np.where(series.timestamps > series.end - DAY, np.nan,
                                                              series.values), s.step)
    elif why == "insufficient":
        told["curve_type"] = "insufficient"
    elif why == "another configured type":
        settings = FitSettings(curve_type="noisy")
    elif why == "no stamp":
        del told["classified"]
    elif why == "another version":
        stamp["version"] = "0.0.1"
    elif why == "periods malformed":
        told["periods"] = "86400"
    else:
        told["regimes"] = [{"centre": "x"}]
    fitted = fit_series(series, settings, previous=stored(told))
    assert "classification" not in fitted.training
    assert fitted.classification["classified"]["at"] == series.end


def test_a_kept_regime_curve_finds_its_regimes_in_today_s_history() -> None:
    rng = np.random.default_rng(8)
    t = EPOCH + STEP * np.arange(14 * 288, dtype=np.int64)
    levels = np.repeat(rng.choice([2.0, 6.0], 14 * 288 // 36), 36)  # an autoscaler's replicas, 3 h at a time
    s = Series({"job": "replicas"}, t, levels + rng.normal(0, 0.05, len(t)), STEP)
    first = fit_series(s, FitSettings())
    assert first.classification["curve_type"] == "regime"
    days = next(d for d in (1, 2, 3) if same_week(s, d))
    grown = np.r_[levels[days * 288:], np.tile([10.0] * 36 + [2.0] * 36, days * 4)]  # a third level, recurring
    now = Series(s.labels, t + days * DAY, grown + rng.normal(0, 0.05, len(t)), STEP)
    warm = fit_series(now, FitSettings(), previous=stored(first.classification))
    assert warm.training["classification"] == "kept"
    assert any(abs(r["centre"] - 10.0) < 0.5 for r in warm.classification["regimes"])
    assert warm.upper.max() >= 10.0


def test_a_walk_forward_replay_keeps_each_series_classification_as_the_daemon_does() -> None:
    from smartmetrics.engine.ensemble import walk_forward_fit

    s = make(days=16, seed=6)
    first_window = Series(s.labels, s.timestamps[:-2 * 288], s.values[:-2 * 288], STEP)
    if not same_week(first_window, 1):
        s = Series({"job": "seasonal", "other": "1"}, s.timestamps, s.values, STEP)
        first_window = Series(s.labels, s.timestamps[:-2 * 288], s.values[:-2 * 288], STEP)
    assert same_week(first_window, 1)
    fit = walk_forward_fit(FitSettings())
    first = fit(first_window, DAY)
    second = fit(Series(s.labels, s.timestamps[288:-288], s.values[288:-288], STEP), DAY)
    # another series, its level within the first one's spread: kept, the first's would pass for it
    other = fit(make(days=14, seed=7, kind="stable"), DAY)
    assert second.training["classification"] == "kept"
    assert second.classification["classified"] == first.classification["classified"]
    assert other.classification["curve_type"] == "stable"


@pytest.mark.parametrize("days", ["alike", "shifted"])
def test_a_young_band_keeps_its_daily_shape_once_the_days_agree_on_it(days: str) -> None:
    """Three days of one daily cycle tie each level to its hour: the fourth day's band at the peak stays
    near the peak (a dip to the trough there alerts). When the last day's cycle came eight hours late,
    the hours are not known yet, and the band at every hour reaches the lows two of the days had."""
    s = make(days=3)
    values = s.values.copy()
    if days == "shifted":
        late = s.timestamps >= s.end - DAY + STEP
        values = np.where(late, 100 + 40 * np.sin(2 * np.pi * (s.timestamps - 8 * 3600) / DAY), values)
    s = Series(s.labels, s.timestamps, values, STEP)
    fit = fit_series(s, FitSettings())
    peak = np.argmin(np.abs((fit.timestamps - 6 * 3600) % DAY))  # sin(2 pi t / DAY) = 1
    trough = np.nanmin(s.values[s.timestamps < s.end - DAY])  # the days before the last one
    if days == "alike":
        assert fit.lower[peak] > 100 > trough
    else:
        assert fit.lower.max() <= trough + 1e-9


def test_a_two_day_fit_s_offsets_are_in_the_scale_of_its_refit() -> None:
    """At two days the backtest's profile learned from a day and a half (most slots seen once) and its
    slot scales are a fraction of the refit's: offsets calibrated in the backtest's scales, applied to
    the refit's, gave a band three times as wide as the same cycle's after eight days."""
    young, grown = fit_series(make(days=2), FitSettings()), fit_series(make(days=8), FitSettings())
    assert young.members[0]["name"] == "profile_day" and width(young) < 2.5 * width(grown)


def test_a_first_weekend_that_began_on_friday_evening_may_end_on_monday() -> None:
    """Tuesday to Sunday of a service that is half as busy from Friday 20:00: the drop looks like a
    level shift, and Monday's band also covers a return to the weekday level, as it does for a weekend
    that begins at Saturday midnight (the shift is then two days old, not two days and four hours)."""
    rng = np.random.default_rng(3)
    t = EPOCH + DAY + STEP * np.arange(6 * DAY // STEP, dtype=np.int64)  # 2024-01-02 (Tuesday) to Sunday
    weekend = t >= EPOCH + 4 * DAY + 20 * 3600
    s = Series({}, t, np.where(weekend, 50.0, 100.0) + rng.normal(0, 2, len(t)), STEP)
    fit = fit_series(s, FitSettings())
    assert fit.training["level_shift"] is not None
    assert fit.upper.min() > 100


@pytest.mark.parametrize("hour", [0, 6, 12, 18])
def test_a_young_fit_s_rescaling_does_not_depend_on_the_hour_it_ran_at(hour: int) -> None:
    """Two and a half days of a cycle noisy by day and quiet by night: the backtest's test points are
    the last half day's, so its scales, held against the refit's over the coming day, said what hour
    the fit ran at (a ratio of 0.23 at midnight, 2.5 at noon). Held against the refit's scales at the
    same points, each fit keeps its band: the next day is covered, whatever the hour."""
    rng = np.random.default_rng(0)
    t = EPOCH + STEP * np.arange(5 * DAY // STEP, dtype=np.int64)
    phase = np.sin(2 * np.pi * t / DAY)
    y = 100 + 40 * phase + rng.normal(0, 1, len(t)) * np.where(phase > 0, 8.0, 1.0)
    start, n = hour * 3600 // STEP, (2 * DAY + DAY // 2) // STEP
    fit = fit_series(Series({}, t[start:start + n], y[start:start + n], STEP), FitSettings())
    after = y[start + n:start + n + len(fit.yhat)]
    assert np.mean((after >= fit.lower) & (after <= fit.upper)) >= 0.99


def test_a_young_fit_whose_backtest_day_was_a_gap_keeps_its_envelope() -> None:
    """Three and a half days whose last day was lost to a scrape gap: the backtest had no residual to
    calibrate on, so the band's width says nothing, and the days agreeing on their shape must not
    lift the envelope (it was five times narrower, and the next day 86% covered)."""
    t = EPOCH + STEP * np.arange(int(4.5 * DAY) // STEP, dtype=np.int64)
    y = 100 + 40 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(0).normal(0, 3, len(t))
    n = int(3.5 * DAY) // STEP
    seen = np.where(np.arange(n) >= n - DAY // STEP, np.nan, y[:n])
    fit = fit_series(Series({}, t[:n], seen, STEP), FitSettings())
    after = y[n:n + len(fit.yhat)]
    assert fit.coverage["n"] == 0 and np.mean((after >= fit.lower) & (after <= fit.upper)) >= 0.98


def test_a_young_fit_with_a_horizon_under_a_step_keeps_finite_offsets() -> None:
    fit = fit_series(make(days=2.5), FitSettings(horizon=60))
    assert np.isfinite([fit.coverage["q_lo"], fit.coverage["q_hi"]]).all()
    json.dumps(fit.to_dict(), allow_nan=False)
